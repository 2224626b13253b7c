//! The subset of TensorBoard's protobuf messages that flowrun writes and reads.
//!
//! Hand-written `prost` structs mirroring `tensorboard/compat/proto/{event,summary,tensor,
//! tensor_shape}.proto` (same field numbers), so no `protoc` or build script is needed. Fields
//! flowrun never uses are left out; prost skips them when decoding files from other writers.

/// `DataType::DT_STRING` in `types.proto`.
pub const DT_STRING: i32 = 7;

/// One entry of an event file: a file version marker or a summary, stamped with time and step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global training step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "event::What", tags = "3, 5")]
    pub what: Option<event::What>,
}

/// The `what` oneof of [`Event`].
pub mod event {
    /// What an event carries (only the variants flowrun uses).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// The file format version, `brain.Event:2`; the first event of every file.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// Tagged values: scalars, images, tensors.
        #[prost(message, tag = "5")]
        Summary(super::Summary),
    }
}

/// A list of tagged values written at one step.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// One tagged value of a [`Summary`] (`Summary.Value` in the proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The tag shown in TensorBoard, e.g. `train_loss`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Which plugin owns a tensor value (text, ...).
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    /// The value itself.
    #[prost(oneof = "summary_value::Kind", tags = "2, 4, 8")]
    pub kind: Option<summary_value::Kind>,
}

/// The `value` oneof of [`SummaryValue`].
pub mod summary_value {
    /// The kinds of value flowrun writes.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        /// A scalar (TensorBoard stores scalars as f32).
        #[prost(float, tag = "2")]
        SimpleValue(f32),
        /// An encoded image.
        #[prost(message, tag = "4")]
        Image(super::SummaryImage),
        /// A tensor, interpreted by the plugin named in the metadata.
        #[prost(message, tag = "8")]
        Tensor(super::TensorProto),
    }
}

/// An encoded image (`Summary.Image` in the proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryImage {
    /// Height in pixels.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Width in pixels.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 1 grayscale, 2 grayscale+alpha, 3 RGB, 4 RGBA.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// The PNG file bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// Says which TensorBoard plugin reads a summary value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// The plugin and its private data.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// A plugin name and its serialized settings (`SummaryMetadata.PluginData`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// e.g. `text`.
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// The plugin's own protobuf; empty means its defaults.
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// A tensor value; flowrun writes only DT_STRING tensors (text).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The element type (`DT_STRING` = 7).
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// The shape.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// String elements, row-major.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// A tensor shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// One entry per dimension; none for a scalar.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<TensorShapeDim>,
}

/// One dimension of a [`TensorShapeProto`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeDim {
    /// The size.
    #[prost(int64, tag = "1")]
    pub size: i64,
}

//! Typo suggestions ("did you mean ...?") for keys, options, targets and resolvers.

/// The closest candidate to `word`, if it is close enough to be a likely typo.
///
/// In order of preference: a case-insensitive match; a candidate whose last dotted part is
/// `word`'s last dotted part (`AffineProbPath` for `flowrun.path.AffineProbPath`); the only
/// candidate whose last part contains `word`'s (`Cosine` in `WarmupCosine`); the nearest by
/// edit distance, within a third of `word`'s length plus one.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    let lower = word.to_lowercase();
    let last = |s: &str| s.rsplit('.').next().unwrap_or_default().to_lowercase();
    let word_last = last(&lower);
    if let Some(c) = candidates.iter().find(|c| c.to_lowercase() == lower) {
        return Some(c);
    }
    if let Some(c) = candidates.iter().find(|c| last(c) == word_last) {
        return Some(c);
    }
    if word_last.chars().count() >= 4 {
        let mut containing = candidates.iter().filter(|c| last(c).contains(&word_last));
        if let (Some(c), None) = (containing.next(), containing.next()) {
            return Some(c);
        }
    }
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent swaps), counted in chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        d[i * width] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_case_and_short_names() {
        let keys = ["hidden_size", "num_heads", "depth"];
        assert_eq!(did_you_mean("hiden_size", keys), Some("hidden_size"));
        assert_eq!(did_you_mean("num_haeds", keys), Some("num_heads"));
        assert_eq!(did_you_mean("DEPTH", keys), Some("depth"));
        assert_eq!(did_you_mean("learning_rate", keys), None);
        let targets = ["flowrun.path.AffineProbPath", "flowrun.path.DiffusionPath"];
        assert_eq!(
            did_you_mean("AffineProbPath", targets),
            Some("flowrun.path.AffineProbPath")
        );
        assert_eq!(
            did_you_mean("flowrun.path.AffinePath", targets),
            Some("flowrun.path.AffineProbPath")
        );
        assert_eq!(did_you_mean("", keys), None);
        let lr = [
            "flowrun.lr.WarmupCosine",
            "flowrun.lr.Constant",
            "flowrun.lr.Linear",
        ];
        assert_eq!(did_you_mean("flowrun.lr.Cosine", lr), Some(lr[0]));
        let sizes = ["input_size", "patch_size", "hidden_size"];
        assert_eq!(did_you_mean("size", sizes), None);
    }

    #[test]
    fn edit_distance_counts_swaps_once() {
        assert_eq!(edit_distance("abc", "acb"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_close_names_only() {
        let opts = ["multi_gpu", "single_gpu", "cpu"];
        assert_eq!(did_you_mean("multi-gpu", opts), Some("multi_gpu"));
        assert_eq!(did_you_mean("cpus", opts), Some("cpu"));
        assert_eq!(did_you_mean("tpu_pod_v4", opts), None);
    }
}

//! A test file's labels in the training file's classes, matched by name.
//!
//! Two record files number their classes each in its own order (an ImageFolder tree sorts
//! its folders), so class 3 of a test file that lacks one of the training file's classes is
//! class 4 of the training file. Scoring by index would then compare every later label with
//! the wrong class and report a confident, wrong accuracy. Classes are matched by name:
//! a test class the training file lacks (or a file without names) is refused, naming the
//! classes; a test file holding a subset of the training classes is scored on what it has,
//! with a warning.

use std::collections::HashMap;

use uic_loader::RecordFile;

use crate::error::{Error, Result};

/// How many class names a message lists before "and N more".
const LISTED: usize = 5;

/// The test file's labels mapped to the training file's class indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    /// `to_train[c]`: the training class named as test class `c`.
    pub to_train: Vec<u32>,
    /// Training classes with images that the test file has no image of, by name.
    pub absent: Vec<String>,
}

/// `names` as a list for a message: the first few, then how many more.
fn listed(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(LISTED)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED {
        s += &format!(" and {} more", names.len() - LISTED);
    }
    s
}

/// Checks that a file's class names can be matched: none empty, none twice.
fn check_names(names: &[String], what: &str) -> Result<()> {
    if names.iter().all(String::is_empty) {
        return Err(Error::Config(format!(
            "{what} has no class names, so its classes cannot be matched to the other file's \
             by name"
        )));
    }
    let mut seen = HashMap::new();
    for (c, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(Error::Config(format!(
                "{what}: class {c} has no name, so it cannot be matched by name"
            )));
        }
        if let Some(first) = seen.insert(n.as_str(), c) {
            return Err(Error::Config(format!(
                "{what}: classes {first} and {c} are both named {n:?}, so they cannot be \
                 matched by name"
            )));
        }
    }
    Ok(())
}

/// Matches the test classes to the training classes by name.
///
/// `train_used[c]` / `test_used[c]`: whether class `c` of that file has any image (a class
/// with none cannot shift a score, so it is neither refused nor reported).
///
/// # Errors
/// A file without usable names (empty or repeated), or a test class with images whose name
/// the training file lacks; the message names `train_what` and `test_what` and the classes.
pub(crate) fn match_classes(
    train_names: &[String],
    train_used: &[bool],
    test_names: &[String],
    test_used: &[bool],
    train_what: &str,
    test_what: &str,
) -> Result<Matched> {
    check_names(train_names, train_what)?;
    check_names(test_names, test_what)?;
    let index: HashMap<&str, u32> = train_names
        .iter()
        .enumerate()
        .map(|(c, n)| (n.as_str(), c as u32))
        .collect();
    let mut to_train = Vec::with_capacity(test_names.len());
    let mut unknown = Vec::new();
    for (c, n) in test_names.iter().enumerate() {
        match index.get(n.as_str()) {
            Some(&t) => to_train.push(t),
            None => {
                if test_used.get(c).copied().unwrap_or(false) {
                    unknown.push(n.clone());
                }
                // Never read: no test image has this class.
                to_train.push(u32::MAX);
            }
        }
    }
    if !unknown.is_empty() {
        return Err(Error::Config(format!(
            "{test_what} has {} class{} that {train_what} lacks: {}; the probes and kNN can \
             only predict the training file's classes (classes are matched by name)",
            unknown.len(),
            if unknown.len() == 1 { "" } else { "es" },
            listed(&unknown)
        )));
    }
    let mut in_test = vec![false; train_names.len()];
    for (c, &t) in to_train.iter().enumerate() {
        if t != u32::MAX && test_used.get(c).copied().unwrap_or(false) {
            in_test[t as usize] = true;
        }
    }
    let absent = train_names
        .iter()
        .enumerate()
        .filter(|&(c, _)| train_used.get(c).copied().unwrap_or(false) && !in_test[c])
        .map(|(_, n)| n.clone())
        .collect();
    Ok(Matched { to_train, absent })
}

/// Which classes of `file` have at least one of `labels`.
fn used(file: &RecordFile, labels: &[u32]) -> Vec<bool> {
    let mut u = vec![false; file.num_classes()];
    for &l in labels {
        if let Some(x) = u.get_mut(l as usize) {
            *x = true;
        }
    }
    u
}

/// `test_labels` (of `test`) rewritten as the classes of `train` with the same names;
/// warns (on the `tracing` log) when the test file lacks some of the training classes.
///
/// # Errors
/// As [`match_classes`].
pub(crate) fn test_labels_in_train_classes(
    train: &RecordFile,
    train_labels: &[u32],
    test: &RecordFile,
    test_labels: &[u32],
) -> Result<Vec<u32>> {
    let names = |f: &RecordFile| -> Vec<String> {
        f.class_names()
            .into_iter()
            .map(|n| n.into_owned())
            .collect()
    };
    let train_what = format!("the training file {}", train.path().display());
    let test_what = format!("the test file {}", test.path().display());
    let m = match_classes(
        &names(train),
        &used(train, train_labels),
        &names(test),
        &used(test, test_labels),
        &train_what,
        &test_what,
    )?;
    if !m.absent.is_empty() {
        tracing::warn!(
            "{test_what} has no image of {} of the training file's classes ({}); scores are \
             over the classes it has",
            m.absent.len(),
            listed(&m.absent)
        );
    }
    Ok(test_labels
        .iter()
        .map(|&l| m.to_train[l as usize])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn all(n: usize) -> Vec<bool> {
        vec![true; n]
    }

    #[test]
    fn classes_in_another_order_map_by_name() {
        let train = s(&["cat", "dog", "fish"]);
        let test = s(&["fish", "cat", "dog"]);
        let m = match_classes(&train, &all(3), &test, &all(3), "train", "test").unwrap();
        assert_eq!(m.to_train, [2, 0, 1]);
        assert!(m.absent.is_empty());
    }

    #[test]
    fn a_missing_class_keeps_the_later_labels_in_place() {
        // The test file lacks "dog": its "fish" is class 1 there, class 2 in training.
        let train = s(&["cat", "dog", "fish"]);
        let test = s(&["cat", "fish"]);
        let m = match_classes(&train, &all(3), &test, &all(2), "train", "test").unwrap();
        assert_eq!(m.to_train, [0, 2]);
        assert_eq!(m.absent, ["dog"]);
    }

    #[test]
    fn a_test_class_the_training_file_lacks_is_refused_by_name() {
        let train = s(&["cat", "dog"]);
        let test = s(&["cat", "dog", "emu"]);
        let e = match_classes(&train, &all(2), &test, &all(3), "T", "the test file x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the test file x has 1 class that T lacks: \"emu\""),
            "{e}"
        );
        // An unknown class with no image cannot shift a score: accepted.
        let m = match_classes(&train, &all(2), &test, &[true, true, false], "T", "x").unwrap();
        assert_eq!(&m.to_train[..2], [0, 1]);
    }

    #[test]
    fn files_without_names_or_with_repeated_names_are_refused() {
        let train = s(&["cat", "dog"]);
        let e = match_classes(&train, &all(2), &s(&["", ""]), &all(2), "T", "X")
            .unwrap_err()
            .to_string();
        assert!(e.contains("X has no class names"), "{e}");
        let e = match_classes(&train, &all(2), &s(&["cat", "cat"]), &all(2), "T", "X")
            .unwrap_err()
            .to_string();
        assert!(e.contains("both named \"cat\""), "{e}");
    }

    #[test]
    fn long_lists_are_cut() {
        let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
        assert_eq!(
            listed(&names),
            "\"c0\", \"c1\", \"c2\", \"c3\", \"c4\" and 3 more"
        );
    }
}

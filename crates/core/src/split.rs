//! The three data splits and their names in the various FER files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A data split. FER2013's `Training` / `PublicTest` / `PrivateTest` are our train / valid / test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    /// All splits in their canonical order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// The name used in artifact paths and the `split` column: `train`, `valid`, `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }

    /// The folder of the Microsoft FER+ layout: `FER2013Train`, `FER2013Valid`, `FER2013Test`.
    pub fn ferplus_folder(self) -> &'static str {
        match self {
            Split::Train => "FER2013Train",
            Split::Valid => "FER2013Valid",
            Split::Test => "FER2013Test",
        }
    }

    /// The `Usage` value of `fer2013.csv` / `fer2013new.csv`.
    pub fn usage(self) -> &'static str {
        match self {
            Split::Train => "Training",
            Split::Valid => "PublicTest",
            Split::Test => "PrivateTest",
        }
    }

    /// The split with the given `Usage` value, if any.
    pub fn from_usage(usage: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|s| s.usage() == usage)
    }
}

/// [`Split::Train`], only so that a table row read without its `split` column (a column
/// projection) has a value there.
impl Default for Split {
    fn default() -> Self {
        Split::Train
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Split::ALL
            .into_iter()
            .find(|split| split.name() == s)
            .ok_or_else(|| format!("unknown split `{s}` (expected train, valid or test)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for split in Split::ALL {
            assert_eq!(split.name().parse::<Split>(), Ok(split));
            assert_eq!(Split::from_usage(split.usage()), Some(split));
        }
        assert!("training".parse::<Split>().is_err());
        assert_eq!(Split::from_usage("Train"), None);
    }
}

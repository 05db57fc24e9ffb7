//! How a record file stores its pixels: the one setting every sample of a file shares.

/// How the pixels of a sample are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum StorageMode {
    /// A JPEG file (baseline or progressive); decodes to RGB.
    Jpeg,
    /// Raw RGB u8 pixels, row-major HWC, `width * height * 3` bytes.
    Raw,
}

impl StorageMode {
    /// The byte that stands for this mode on disk.
    pub fn code(self) -> u8 {
        match self {
            StorageMode::Jpeg => 1,
            StorageMode::Raw => 2,
        }
    }

    /// The mode a byte on disk stands for, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(StorageMode::Jpeg),
            2 => Some(StorageMode::Raw),
            _ => None,
        }
    }

    /// The lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            StorageMode::Jpeg => "jpeg",
            StorageMode::Raw => "raw",
        }
    }
}

impl std::fmt::Display for StorageMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

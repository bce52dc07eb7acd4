//! Class names and fixed sizes of the FER+ data.

/// Side of a FER2013 face image in pixels (48x48, 8-bit grayscale).
pub const IMAGE_SIDE: usize = 48;
/// Number of pixels of one face (`IMAGE_SIDE * IMAGE_SIDE`).
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of emotion classes a model predicts.
pub const NUM_CLASSES: usize = 8;
/// Number of FER+ vote columns: the 8 emotions, `unknown` and `NF` (not a face).
pub const NUM_VOTES: usize = 10;

/// The eight emotions in FER+ order; a class index is a position in this array.
pub const EMOTIONS: [&str; NUM_CLASSES] = [
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
];

/// The ten FER+ vote columns in file order.
pub const VOTE_COLUMNS: [&str; NUM_VOTES] = [
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
];

/// Index of the `unknown` vote column.
pub const UNKNOWN: usize = 8;
/// Index of the `NF` (not a face) vote column.
pub const NOT_A_FACE: usize = 9;

//! Arrow schemas of the Parquet artifacts, one constructor per artifact.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::classes::{IMAGE_PIXELS, NUM_CLASSES, NUM_VOTES};

/// Version of the artifact schemas; bumped whenever a column changes meaning or type.
pub const SCHEMA_VERSION: u32 = 1;

/// A fixed-size list of `len` non-null `item` values.
pub fn fixed_list(item: DataType, len: usize) -> DataType {
    let len = i32::try_from(len).expect("list length fits i32");
    DataType::FixedSizeList(Arc::new(Field::new("item", item, false)), len)
}

/// The schema of `ingest/<split>.parquet`, one row per face:
///
/// | column | type | meaning |
/// |---|---|---|
/// | `image` | utf8 | file name, e.g. `fer0000000.png` |
/// | `row` | u32 | row index in `fer2013.csv` |
/// | `split` | utf8 | `train`, `valid` or `test` |
/// | `pixels` | 2304 × u8 | row-major 48x48 grayscale |
/// | `votes` | 10 × u8 | crowd votes in FER+ order (8 emotions, unknown, NF) |
/// | `majority` | u8, nullable | FER+ majority class; null when FER+ drops the face |
/// | `soft` | 8 × f32, nullable | FER+ `crossentropy` target |
/// | `multi_target` | 8 × f32, nullable | FER+ `multi_target` set as 0/1 |
/// | `crowd` | 8 × f32, nullable | plain vote distribution over the 8 emotions |
/// | `crowd_entropy` | f32, nullable | entropy of `crowd` in nats |
pub fn ingest() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("image", DataType::Utf8, false),
            Field::new("row", DataType::UInt32, false),
            Field::new("split", DataType::Utf8, false),
            Field::new("pixels", fixed_list(DataType::UInt8, IMAGE_PIXELS), false),
            Field::new("votes", fixed_list(DataType::UInt8, NUM_VOTES), false),
            Field::new("majority", DataType::UInt8, true),
            Field::new("soft", fixed_list(DataType::Float32, NUM_CLASSES), true),
            Field::new(
                "multi_target",
                fixed_list(DataType::Float32, NUM_CLASSES),
                true,
            ),
            Field::new("crowd", fixed_list(DataType::Float32, NUM_CLASSES), true),
            Field::new("crowd_entropy", DataType::Float32, true),
        ]))
    });
    Arc::clone(&SCHEMA)
}

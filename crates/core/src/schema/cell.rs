//! The conversion between a row struct's fields and Arrow columns: one [`Cell`] impl per Rust
//! field type, the [`Row`] trait every table's row struct implements, and the by-name column
//! lookup that checks each column's type against the table's schema.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Float32Type, Float64Type, UInt8Type, UInt16Type, UInt32Type,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, PrimitiveArray, RecordBatch, StringArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, FieldRef, SchemaRef};

/// Why a record batch and a table's rows do not convert into each other. The caller adds the
/// file it read or writes.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("missing column `{column}`")]
    MissingColumn { column: String },
    #[error("column `{column}` has type {found} but {expected} was expected")]
    WrongType {
        column: String,
        expected: DataType,
        found: DataType,
    },
    #[error("column `{column}` is null in row {row}, but the table does not allow nulls there")]
    Null { column: String, row: usize },
    #[error("column `{column}`, row {row}: {found} values where the schema holds {expected}")]
    Length {
        column: String,
        row: usize,
        expected: usize,
        found: usize,
    },
    #[error("the columns do not make a record batch of the schema: {message}")]
    Batch { message: String },
    #[error("column `{column}`, row {row}: {message}")]
    Value {
        column: String,
        row: usize,
        message: String,
    },
}

/// A table's typed row: converts a slice of rows to one record batch of [`Row::schema`] (same
/// order, one row each) and a record batch back to rows, finding every column by its name.
pub trait Row: Sized {
    /// The table's schema.
    fn schema() -> SchemaRef;

    /// The rows as one record batch of [`Row::schema`].
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, RowError>;

    /// Every row of `batch`; every column of the schema must be present with its type.
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, RowError> {
        Self::from_batch_columns(batch, None)
    }

    /// The rows of a batch read with only `columns` (all when `None`): those columns must be
    /// present with their types, and the fields of the other columns keep their default (empty
    /// string, empty list, zero, `None`).
    fn from_batch_columns(
        batch: &RecordBatch,
        columns: Option<&[&str]>,
    ) -> Result<Vec<Self>, RowError>;
}

/// A field type of a row struct and its Arrow column.
pub trait Cell: Sized + Default {
    /// The column of `values`, typed as `field` (whose type must be this cell's).
    fn encode<'a>(
        values: impl ExactSizeIterator<Item = &'a Self>,
        field: &Field,
    ) -> Result<ArrayRef, RowError>
    where
        Self: 'a;

    /// The values of a column already checked to have the schema's type.
    fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError>;
}

fn wrong_type(column: &str, expected: &DataType, found: &DataType) -> RowError {
    RowError::WrongType {
        column: column.to_owned(),
        expected: expected.clone(),
        found: found.clone(),
    }
}

fn no_nulls(array: &dyn Array, column: &str) -> Result<(), RowError> {
    match array
        .nulls()
        .and_then(|n| (0..n.len()).find(|&i| n.is_null(i)))
    {
        Some(row) => Err(RowError::Null {
            column: column.to_owned(),
            row,
        }),
        None => Ok(()),
    }
}

impl Cell for String {
    fn encode<'a>(
        values: impl ExactSizeIterator<Item = &'a Self>,
        _field: &Field,
    ) -> Result<ArrayRef, RowError> {
        Ok(Arc::new(StringArray::from_iter_values(values)))
    }

    fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError> {
        no_nulls(array, column)?;
        let strings = array
            .as_string_opt::<i32>()
            .ok_or_else(|| wrong_type(column, &DataType::Utf8, array.data_type()))?;
        Ok(strings.iter().map(|s| s.unwrap_or("").to_owned()).collect())
    }
}

/// A name column (`arch`, `method`, `split`, `label_mode`): the names of [`crate::names`] and
/// [`crate::Split`] as Utf8, read back through their `FromStr`, so a table naming an unknown
/// architecture or method is an error naming the column, the row and the value.
macro_rules! name_cell {
    ($($ty:ty),+) => {$(
        impl Cell for $ty {
            fn encode<'a>(
                values: impl ExactSizeIterator<Item = &'a Self>,
                _field: &Field,
            ) -> Result<ArrayRef, RowError> {
                Ok(Arc::new(StringArray::from_iter_values(
                    values.map(|v| v.to_string()),
                )))
            }

            fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError> {
                String::decode(array, column)?
                    .iter()
                    .enumerate()
                    .map(|(row, s)| {
                        s.parse().map_err(|message| RowError::Value {
                            column: column.to_owned(),
                            row,
                            message,
                        })
                    })
                    .collect()
            }
        }
    )+};
}

name_cell!(
    crate::names::Arch,
    crate::names::Method,
    crate::names::LabelMode,
    crate::split::Split
);

impl Cell for bool {
    fn encode<'a>(
        values: impl ExactSizeIterator<Item = &'a Self>,
        _field: &Field,
    ) -> Result<ArrayRef, RowError> {
        Ok(Arc::new(BooleanArray::from(
            values.copied().collect::<Vec<_>>(),
        )))
    }

    fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError> {
        no_nulls(array, column)?;
        let flags = array
            .as_boolean_opt()
            .ok_or_else(|| wrong_type(column, &DataType::Boolean, array.data_type()))?;
        Ok(flags.values().iter().collect())
    }
}

/// The primitive array of a column, or a type error naming the column.
fn primitive<'a, T: ArrowPrimitiveType>(
    array: &'a dyn Array,
    column: &str,
) -> Result<&'a PrimitiveArray<T>, RowError> {
    array
        .as_primitive_opt::<T>()
        .ok_or_else(|| wrong_type(column, &T::DATA_TYPE, array.data_type()))
}

/// `Cell` for a primitive (non-null column) and its `Option` (nullable column).
macro_rules! primitive_cell {
    ($native:ty, $arrow:ty) => {
        impl Cell for $native {
            fn encode<'a>(
                values: impl ExactSizeIterator<Item = &'a Self>,
                _field: &Field,
            ) -> Result<ArrayRef, RowError> {
                Ok(Arc::new(PrimitiveArray::<$arrow>::from_iter_values(
                    values.copied(),
                )))
            }

            fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError> {
                no_nulls(array, column)?;
                Ok(primitive::<$arrow>(array, column)?.values().to_vec())
            }
        }

        impl Cell for Option<$native> {
            fn encode<'a>(
                values: impl ExactSizeIterator<Item = &'a Self>,
                _field: &Field,
            ) -> Result<ArrayRef, RowError> {
                Ok(Arc::new(
                    values.copied().collect::<PrimitiveArray<$arrow>>(),
                ))
            }

            fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError> {
                Ok(primitive::<$arrow>(array, column)?.iter().collect())
            }
        }
    };
}

primitive_cell!(u8, UInt8Type);
primitive_cell!(u16, UInt16Type);
primitive_cell!(u32, UInt32Type);
primitive_cell!(f32, Float32Type);
primitive_cell!(f64, Float64Type);

/// The item field and length of a fixed-size list field.
fn list_shape(field: &Field) -> Result<(FieldRef, usize), RowError> {
    match field.data_type() {
        DataType::FixedSizeList(item, len) => {
            Ok((Arc::clone(item), usize::try_from(*len).unwrap_or_default()))
        }
        other => Err(RowError::Batch {
            message: format!("column `{}` of type {other} is not a list", field.name()),
        }),
    }
}

/// A fixed-size list column of `T` from its rows (`None` rows are null, zeros underneath).
fn encode_list<'a, T: ArrowPrimitiveType>(
    rows: impl ExactSizeIterator<Item = Option<&'a [T::Native]>>,
    field: &Field,
) -> Result<ArrayRef, RowError> {
    let (item, len) = list_shape(field)?;
    let mut values = Vec::with_capacity(rows.len() * len);
    let mut valid = Vec::with_capacity(rows.len());
    for (row, cells) in rows.enumerate() {
        match cells {
            Some(cells) if cells.len() == len => values.extend_from_slice(cells),
            Some(cells) => {
                return Err(RowError::Length {
                    column: field.name().clone(),
                    row,
                    expected: len,
                    found: cells.len(),
                });
            }
            None => values.resize(values.len() + len, T::Native::default()),
        }
        valid.push(cells.is_some());
    }
    let nulls = field.is_nullable().then(|| NullBuffer::from(valid));
    let size = i32::try_from(len).unwrap_or(i32::MAX);
    let values: ArrayRef = Arc::new(PrimitiveArray::<T>::from_iter_values(values));
    FixedSizeListArray::try_new(item, size, values, nulls)
        .map(|a| Arc::new(a) as ArrayRef)
        .map_err(|e| RowError::Batch {
            message: format!("column `{}`: {e}", field.name()),
        })
}

/// The rows of a fixed-size list column of `T` (`None` for null rows).
fn decode_list<'a, T: ArrowPrimitiveType>(
    array: &'a dyn Array,
    column: &str,
) -> Result<Vec<Option<&'a [T::Native]>>, RowError> {
    let list = array
        .as_fixed_size_list_opt()
        .ok_or_else(|| wrong_type(column, &DataType::Null, array.data_type()))?;
    let values = primitive::<T>(list.values().as_ref(), column)?.values();
    let len = usize::try_from(list.value_length()).unwrap_or_default();
    (0..list.len())
        .map(|row| {
            if list.is_null(row) {
                return Ok(None);
            }
            let at = list.value_offset_at(row);
            values
                .get(at..at + len)
                .map(Some)
                .ok_or_else(|| RowError::Length {
                    column: column.to_owned(),
                    row,
                    expected: len,
                    found: values.len().saturating_sub(at),
                })
        })
        .collect()
}

/// A non-null list row.
fn required<'a, N>(row: Option<&'a [N]>, column: &str, index: usize) -> Result<&'a [N], RowError> {
    row.ok_or_else(|| RowError::Null {
        column: column.to_owned(),
        row: index,
    })
}

/// A list row as an array of `N` items.
fn to_array<N: Copy + Default, const L: usize>(
    cells: &[N],
    column: &str,
    row: usize,
) -> Result<[N; L], RowError> {
    <[N; L]>::try_from(cells).map_err(|_| RowError::Length {
        column: column.to_owned(),
        row,
        expected: L,
        found: cells.len(),
    })
}

/// `Cell` for fixed-size lists: a `Vec` (length from the schema), an array, and an optional
/// array (nullable column).
macro_rules! list_cell {
    ($native:ty, $arrow:ty) => {
        impl Cell for Vec<$native> {
            fn encode<'a>(
                values: impl ExactSizeIterator<Item = &'a Self>,
                field: &Field,
            ) -> Result<ArrayRef, RowError> {
                encode_list::<$arrow>(values.map(|v| Some(v.as_slice())), field)
            }

            fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError> {
                let rows = decode_list::<$arrow>(array, column)?;
                rows.into_iter()
                    .enumerate()
                    .map(|(i, r)| required(r, column, i).map(<[$native]>::to_vec))
                    .collect()
            }
        }

        impl<const L: usize> Cell for [$native; L]
        where
            [$native; L]: Default,
        {
            fn encode<'a>(
                values: impl ExactSizeIterator<Item = &'a Self>,
                field: &Field,
            ) -> Result<ArrayRef, RowError> {
                encode_list::<$arrow>(values.map(|v| Some(v.as_slice())), field)
            }

            fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError> {
                let rows = decode_list::<$arrow>(array, column)?;
                rows.into_iter()
                    .enumerate()
                    .map(|(i, r)| to_array(required(r, column, i)?, column, i))
                    .collect()
            }
        }

        impl<const L: usize> Cell for Option<[$native; L]> {
            fn encode<'a>(
                values: impl ExactSizeIterator<Item = &'a Self>,
                field: &Field,
            ) -> Result<ArrayRef, RowError> {
                encode_list::<$arrow>(values.map(|v| v.as_ref().map(|a| a.as_slice())), field)
            }

            fn decode(array: &dyn Array, column: &str) -> Result<Vec<Self>, RowError> {
                let rows = decode_list::<$arrow>(array, column)?;
                rows.into_iter()
                    .enumerate()
                    .map(|(i, r)| r.map(|r| to_array(r, column, i)).transpose())
                    .collect()
            }
        }
    };
}

list_cell!(u8, UInt8Type);
list_cell!(f32, Float32Type);

/// The column `name` of `schema` built from `values`.
pub(crate) fn encode<'a, C: Cell + 'a>(
    schema: &SchemaRef,
    name: &str,
    values: impl ExactSizeIterator<Item = &'a C>,
) -> Result<ArrayRef, RowError> {
    let field = schema
        .field_with_name(name)
        .map_err(|_| RowError::MissingColumn {
            column: name.to_owned(),
        })?;
    C::encode(values, field)
}

/// The values of column `name` of `batch`, checked against its type in `schema`; empty when
/// `only` leaves the column out (the rows then keep the field's default).
pub(crate) fn decode<C: Cell>(
    batch: &RecordBatch,
    schema: &SchemaRef,
    name: &str,
    only: Option<&[&str]>,
) -> Result<Vec<C>, RowError> {
    if only.is_some_and(|only| !only.contains(&name)) {
        return Ok(Vec::new());
    }
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| RowError::MissingColumn {
            column: name.to_owned(),
        })?;
    if let Ok(field) = schema.field_with_name(name)
        && field.data_type() != array.data_type()
    {
        return Err(wrong_type(name, field.data_type(), array.data_type()));
    }
    C::decode(array.as_ref(), name)
}

/// The record batch of `schema` from its columns in order, each named as the schema's field at
/// its position.
pub(crate) fn batch(
    schema: SchemaRef,
    columns: Vec<(&str, ArrayRef)>,
) -> Result<RecordBatch, RowError> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if names != expected {
        return Err(RowError::Batch {
            message: format!("columns {names:?}, but the schema has {expected:?}"),
        });
    }
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(schema, arrays).map_err(|e| RowError::Batch {
        message: e.to_string(),
    })
}

/// Declares a table's row struct, one field per column named as the column, in the schema's
/// column order, and implements [`Row`] for it.
macro_rules! table_row {
    (
        $(#[$meta:meta])*
        pub struct $name:ident: $schema:path {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)+
        }

        impl $crate::schema::Row for $name {
            fn schema() -> arrow_schema::SchemaRef {
                $schema()
            }

            fn to_batch(
                rows: &[Self],
            ) -> Result<arrow_array::RecordBatch, $crate::schema::RowError> {
                let schema = Self::schema();
                let columns = vec![$((
                    stringify!($field),
                    $crate::schema::cell::encode(
                        &schema,
                        stringify!($field),
                        rows.iter().map(|r| &r.$field),
                    )?,
                ),)+];
                $crate::schema::cell::batch(schema, columns)
            }

            fn from_batch_columns(
                batch: &arrow_array::RecordBatch,
                only: Option<&[&str]>,
            ) -> Result<Vec<Self>, $crate::schema::RowError> {
                let schema = Self::schema();
                $(let mut $field = $crate::schema::cell::decode::<$ty>(
                    batch,
                    &schema,
                    stringify!($field),
                    only,
                )?
                .into_iter();)+
                Ok((0..batch.num_rows())
                    .map(|_| $name {
                        $($field: $field.next().unwrap_or_default(),)+
                    })
                    .collect())
            }
        }
    };
}

pub(crate) use table_row;

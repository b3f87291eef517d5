//! GGUF reader: metadata key/values and tensor descriptors, with tensor data left in the
//! memory-mapped file. It validates offsets and sizes so a truncated or hostile file is an error,
//! never an out-of-bounds read. It does not interpret tensors; see `tensor` for that.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::tensor::DType;
use crate::EngineError;

const MAGIC: u32 = 0x4655_4747; // "GGUF" little-endian
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(u64::from(v)),
            Self::U16(v) => Some(u64::from(v)),
            Self::U32(v) => Some(u64::from(v)),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(i64::from(v)),
            Self::I16(v) => Some(i64::from(v)),
            Self::I32(v) => Some(i64::from(v)),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    #[must_use]
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Self::F32(v) => Some(v),
            #[allow(clippy::cast_possible_truncation)]
            Self::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            Self::Array(values) => Some(values),
            _ => None,
        }
    }
}

/// Where one tensor's bytes live and how to read them.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the contiguous (row-length) dimension.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Absolute byte offset in the file.
    pub offset: usize,
    pub size: usize,
}

/// An opened GGUF file.
pub struct GgufFile {
    pub metadata: HashMap<String, MetaValue>,
    pub tensors: HashMap<String, TensorInfo>,
    pub mmap: Arc<Mmap>,
}

impl GgufFile {
    /// Maps the file and parses its header.
    ///
    /// # Errors
    /// Fails on I/O errors, a wrong magic or version, truncated data, unknown value types, or
    /// tensors of a type this engine cannot compute with.
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let file = File::open(path)
            .map_err(|e| EngineError::Load(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: the mapping is read-only and the file is not expected to be modified while
        // served; every read below is bounds-checked against the mapping's length.
        let mmap = unsafe { Mmap::map(&file) }
            .map_err(|e| EngineError::Load(format!("cannot map {}: {e}", path.display())))?;
        let mmap = Arc::new(mmap);
        let mut reader = Reader {
            data: &mmap,
            pos: 0,
        };
        let magic = reader.u32()?;
        if magic != MAGIC {
            return Err(EngineError::Load(format!(
                "{} is not a GGUF file (bad magic)",
                path.display()
            )));
        }
        let version = reader.u32()?;
        if !(2..=3).contains(&version) {
            return Err(EngineError::Load(format!(
                "unsupported GGUF version {version}"
            )));
        }
        let tensor_count = reader.u64()?;
        let kv_count = reader.u64()?;
        let mut metadata = HashMap::new();
        for _ in 0..kv_count {
            let key = reader.string()?;
            let value_type = reader.u32()?;
            let value = reader.value(value_type)?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::new();
        for _ in 0..tensor_count {
            let name = reader.string()?;
            let n_dims = reader.u32()?;
            if n_dims > 4 {
                return Err(EngineError::Load(format!(
                    "tensor {name} has {n_dims} dimensions"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| reader.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let type_id = reader.u32()?;
            let offset = reader.u64()?;
            infos.push((name, dims, type_id, offset));
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(MetaValue::as_u64)
            .filter(|a| *a > 0)
            .unwrap_or(DEFAULT_ALIGNMENT);
        let data_start = (reader.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = HashMap::new();
        for (name, dims, type_id, offset) in infos {
            let dtype = DType::from_gguf(type_id).ok_or_else(|| {
                EngineError::Load(format!(
                    "tensor {name} uses GGML type {type_id}, which this engine does not support yet"
                ))
            })?;
            let elements = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
            let size = elements
                .and_then(|n| dtype.byte_size(n))
                .ok_or_else(|| EngineError::Load(format!("tensor {name} has an invalid shape")))?;
            let start = data_start
                .checked_add(offset)
                .filter(|s| {
                    s.checked_add(size)
                        .is_some_and(|end| end <= mmap.len() as u64)
                })
                .ok_or_else(|| EngineError::Load(format!("tensor {name} lies outside the file")))?;
            let (Ok(start), Ok(size)) = (usize::try_from(start), usize::try_from(size)) else {
                return Err(EngineError::Load(format!("tensor {name} is too large")));
            };
            tensors.insert(
                name.clone(),
                TensorInfo {
                    name,
                    dims,
                    dtype,
                    offset: start,
                    size,
                },
            );
        }
        Ok(Self {
            metadata,
            tensors,
            mmap,
        })
    }

    #[must_use]
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// A required string value.
    ///
    /// # Errors
    /// When the key is absent or not a string.
    pub fn string(&self, key: &str) -> Result<&str, EngineError> {
        self.get(key)
            .and_then(MetaValue::as_str)
            .ok_or_else(|| EngineError::Load(format!("GGUF metadata {key} is missing")))
    }

    /// A required unsigned integer value.
    ///
    /// # Errors
    /// When the key is absent or not an integer.
    pub fn uint(&self, key: &str) -> Result<u64, EngineError> {
        self.get(key)
            .and_then(MetaValue::as_u64)
            .ok_or_else(|| EngineError::Load(format!("GGUF metadata {key} is missing")))
    }

    /// The bytes of a tensor.
    #[must_use]
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.mmap[info.offset..info.offset + info.size]
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], EngineError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| EngineError::Load("GGUF header is truncated".into()))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EngineError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, EngineError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, EngineError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize, EngineError> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.data.len())
            .ok_or_else(|| EngineError::Load(format!("GGUF length {n} exceeds the file")))
    }

    fn string(&mut self) -> Result<String, EngineError> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, value_type: u32) -> Result<MetaValue, EngineError> {
        Ok(match value_type {
            0 => MetaValue::U8(self.array::<1>()?[0]),
            1 => MetaValue::I8(i8::from_le_bytes(self.array()?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array()?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array()?)),
            4 => MetaValue::U32(self.u32()?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array()?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array()?)),
            7 => MetaValue::Bool(self.array::<1>()?[0] != 0),
            8 => MetaValue::String(self.string()?),
            9 => {
                let element_type = self.u32()?;
                let count = self.len()?;
                let mut values = Vec::with_capacity(count.min(1 << 20));
                for _ in 0..count {
                    values.push(self.value(element_type)?);
                }
                MetaValue::Array(values)
            }
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array()?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(EngineError::Load(format!(
                    "unknown GGUF value type {other}"
                )));
            }
        })
    }
}

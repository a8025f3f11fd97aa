//! The ledger export file: a self-contained copy of a chain that anyone can
//! verify offline (`quorate ledger verify FILE`).
//!
//! ```text
//! file    = MAGIC record(header) record(committed block)*
//! MAGIC   = "QUORATE-LEDGER\n" 0x02          (16 bytes: name, newline, version)
//! record  = length:u32-big-endian  canonical-CBOR-item(length bytes)
//! ```
//! The header is an [`ExportHeader`]; blocks follow in height order from 0.
//! Records are read one at a time, so verifying a long chain needs memory for
//! one block, not the chain. `docs/ledger-format.md` specifies every item.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::block::CommittedBlock;
use crate::codec::{self, DecodeError, EncodeError};
use crate::hash::Hash;

/// The first 16 bytes of every export file: the name, a newline and the
/// format version. Version 2: `tx_root` covers whole entries and a
/// certificate's `value_id` is a byte string, so a version-1 file cannot
/// verify under these rules and is refused by its version byte instead.
pub const MAGIC: &[u8; 16] = b"QUORATE-LEDGER\n\x02";

/// The format version this build reads and writes (the last magic byte).
pub const VERSION: u8 = MAGIC[15];

/// Largest record: one block with its certificate.
pub const RECORD_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// The first record of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// The chain id.
    pub chain_id: String,
    /// Hash of the genesis block.
    pub genesis_hash: Hash,
    /// Height of the last block in the file.
    pub tip_height: u64,
    /// Hash of the last block in the file.
    pub tip_hash: Hash,
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The destination failed.
    #[error("write: {0}")]
    Io(#[from] io::Error),
    /// A value could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A block is larger than a record may be.
    #[error("a record of {0} bytes exceeds the {RECORD_BYTES_MAX}-byte limit")]
    TooLarge(usize),
}

/// Why an export could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The source failed.
    #[error("read: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with the name of [`MAGIC`].
    #[error("not a Quorate ledger export (bad magic)")]
    Magic,
    /// A Quorate ledger export of another format version.
    #[error(
        "a Quorate ledger export of format version {found}; this build reads version {VERSION}"
    )]
    Version {
        /// The file's version byte.
        found: u8,
    },
    /// The file ends inside a record.
    #[error("truncated: the file ends inside record {record}")]
    Truncated {
        /// 0 is the header.
        record: u64,
    },
    /// A record declares a length over the limit.
    #[error("record {record} declares {len} bytes, over the {RECORD_BYTES_MAX}-byte limit")]
    TooLarge {
        /// 0 is the header.
        record: u64,
        /// Declared length.
        len: u32,
    },
    /// A record is not the canonical encoding of what belongs there.
    #[error("record {record}: {source}")]
    Decode {
        /// 0 is the header.
        record: u64,
        /// What the decoder said.
        source: DecodeError,
    },
}

/// Writes an export: magic, header, then `blocks` in order.
pub fn write<W: Write>(
    out: &mut W,
    header: &ExportHeader,
    blocks: impl IntoIterator<Item = CommittedBlock>,
) -> Result<(), WriteError> {
    out.write_all(MAGIC)?;
    write_record(out, &codec::encode(header)?)?;
    for block in blocks {
        write_record(out, &codec::encode(&block)?)?;
    }
    out.flush()?;
    Ok(())
}

/// The start of an export (magic and header), for writers that produce
/// the file piece by piece; [`block_record`] gives each block after it.
pub fn preamble(header: &ExportHeader) -> Result<Vec<u8>, WriteError> {
    let mut out = MAGIC.to_vec();
    write_record(&mut out, &codec::encode(header)?)?;
    Ok(out)
}

/// One block's record of an export.
pub fn block_record(block: &CommittedBlock) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    write_record(&mut out, &codec::encode(block)?)?;
    Ok(out)
}

fn write_record<W: Write>(out: &mut W, bytes: &[u8]) -> Result<(), WriteError> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= RECORD_BYTES_MAX)
        .ok_or(WriteError::TooLarge(bytes.len()))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)?;
    Ok(())
}

/// Reads an export: the header, then an iterator over its blocks.
pub struct Reader<R> {
    input: R,
    record: u64,
    header: ExportHeader,
}

impl<R: Read> Reader<R> {
    /// Checks the magic and reads the header.
    pub fn new(mut input: R) -> Result<Self, ReadError> {
        let mut magic = [0u8; 16];
        input.read_exact(&mut magic).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ReadError::Magic,
            _ => ReadError::Io(e),
        })?;
        if magic[..15] != MAGIC[..15] {
            return Err(ReadError::Magic);
        }
        if magic[15] != VERSION {
            return Err(ReadError::Version { found: magic[15] });
        }
        let bytes = read_record(&mut input, 0)?.ok_or(ReadError::Truncated { record: 0 })?;
        let header =
            codec::decode(&bytes).map_err(|source| ReadError::Decode { record: 0, source })?;
        Ok(Self {
            input,
            record: 1,
            header,
        })
    }

    /// The export's header.
    pub fn header(&self) -> &ExportHeader {
        &self.header
    }

    /// The next block, `None` at a clean end of file.
    pub fn next_block(&mut self) -> Result<Option<CommittedBlock>, ReadError> {
        let record = self.record;
        let Some(bytes) = read_record(&mut self.input, record)? else {
            return Ok(None);
        };
        self.record += 1;
        codec::decode(&bytes)
            .map(Some)
            .map_err(|source| ReadError::Decode { record, source })
    }
}

/// Reads one record; `None` if the input ends cleanly before it.
fn read_record<R: Read>(input: &mut R, record: u64) -> Result<Option<Vec<u8>>, ReadError> {
    let mut len = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match input.read(&mut len[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(ReadError::Truncated { record }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len);
    if len > RECORD_BYTES_MAX {
        return Err(ReadError::TooLarge { record, len });
    }
    let mut bytes = Vec::new();
    // `take` so a lying length cannot make us allocate more than the input has.
    input.take(u64::from(len)).read_to_end(&mut bytes)?;
    if bytes.len() != len as usize {
        return Err(ReadError::Truncated { record });
    }
    Ok(Some(bytes))
}

/// Why an export does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyExportError {
    /// The file could not be read or decoded.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A block does not verify.
    #[error(transparent)]
    Chain(#[from] crate::chain::VerifyError),
    /// The header does not describe the chain that follows it.
    #[error("the header says {field} is {claimed}, the chain has {actual}")]
    Header {
        /// Which header field.
        field: &'static str,
        /// What the header says.
        claimed: String,
        /// What the chain has.
        actual: String,
    },
}

/// Verifies an export from genesis, one block in memory at a time, and
/// checks that its header describes the chain. Returns the state at the tip.
pub fn verify<R: Read>(input: R) -> Result<crate::chain::ChainState, VerifyExportError> {
    use crate::chain::{BlockError, MemoryChain, VerifyError};
    let mut reader = Reader::new(input)?;
    let genesis = reader.next_block()?.ok_or(VerifyError {
        height: 0,
        reason: BlockError::EmptyChain,
    })?;
    let mut chain = MemoryChain::from_genesis(&genesis)?;
    while let Some(block) = reader.next_block()? {
        chain.apply(&block)?;
    }
    let chain = chain.into_chain();
    let header = reader.header();
    let mismatch = |field, claimed: String, actual: String| {
        Err(VerifyExportError::Header {
            field,
            claimed,
            actual,
        })
    };
    if header.chain_id != chain.chain_id() {
        return mismatch(
            "chain_id",
            header.chain_id.clone(),
            chain.chain_id().to_owned(),
        );
    }
    if header.genesis_hash != chain.genesis_hash() {
        return mismatch(
            "genesis_hash",
            header.genesis_hash.to_string(),
            chain.genesis_hash().to_string(),
        );
    }
    if header.tip_height != chain.tip().height {
        return mismatch(
            "tip_height",
            header.tip_height.to_string(),
            chain.tip().height.to_string(),
        );
    }
    if header.tip_hash != chain.tip().hash {
        return mismatch(
            "tip_hash",
            header.tip_hash.to_string(),
            chain.tip().hash.to_string(),
        );
    }
    Ok(chain)
}

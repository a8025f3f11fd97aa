//! The ledger export reader (`quorate ledger verify FILE`) over arbitrary
//! bytes: `export::Reader` record by record, and `export::verify`.
//!
//! Properties: reading from memory never fails with an I/O error; a file
//! the reader reads to a clean end is canonical: writing its header and
//! blocks again gives back exactly the input; a file that verifies is such
//! a file, its header describes the chain the verifier returns, and the
//! blocks it read verify one by one from genesis to that tip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_ledger::chain::MemoryChain;
use quorate_ledger::export::{self, ReadError, VerifyExportError};

fuzz_target!(|data: &[u8]| {
    let read = read_all(data);
    if let Err(ReadError::Io(e)) = &read {
        panic!("I/O error reading from memory: {e}");
    }
    if let Ok((header, blocks)) = &read {
        let mut again = Vec::new();
        export::write(&mut again, header, blocks.iter().cloned()).expect("rewrites");
        assert_eq!(again, data, "a cleanly read export is not canonical");
    }
    match export::verify(data) {
        Ok(chain) => {
            let (header, blocks) = read.expect("a verified export reads cleanly");
            assert_eq!(header.chain_id, chain.chain_id());
            assert_eq!(header.genesis_hash, chain.genesis_hash());
            assert_eq!(header.tip_height, chain.tip().height);
            assert_eq!(header.tip_hash, chain.tip().hash);
            assert_eq!(blocks.len() as u64, chain.tip().height + 1);
            let (genesis, rest) = blocks.split_first().expect("genesis");
            let mut replay = MemoryChain::from_genesis(genesis).expect("genesis verifies");
            for block in rest {
                replay.apply(block).expect("each block verifies");
            }
            assert_eq!(*replay.chain(), chain);
        }
        Err(VerifyExportError::Read(ReadError::Io(e))) => {
            panic!("I/O error verifying from memory: {e}")
        }
        Err(_) => {}
    }
});

type Read = (
    export::ExportHeader,
    Vec<quorate_ledger::block::CommittedBlock>,
);

fn read_all(data: &[u8]) -> Result<Read, ReadError> {
    let mut reader = export::Reader::new(data)?;
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block()? {
        blocks.push(block);
    }
    Ok((reader.header().clone(), blocks))
}

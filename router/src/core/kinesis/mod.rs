//! What Kinesis Data Streams itself defines, as pure code shared by the Kinesis sink (which
//! writes streams) and the HTTP source's Kinesis-compatible endpoint (which receives producers'
//! requests): MD5 hash keys and their decimal form ([`hash`]), many keys' hash keys at once
//! ([`md5x4`]), and the KPL aggregated record format, to pack and to open ([`aggregate`]).

pub mod aggregate;
pub mod hash;
pub mod md5x4;

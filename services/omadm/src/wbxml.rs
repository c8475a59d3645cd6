//! WBXML (WAP-192, versions 1.1-1.3) codec between bytes and the generic `Element` tree, for SyncML DM 1.2
//! messages (`application/vnd.syncml.dm+wbxml`) and TNDS / DM DDF documents (code pages 0 SyncML, 1 MetInf, 2 DDF).

use std::borrow::Cow;
use std::collections::HashMap;

use thiserror::Error;

use crate::element::{Budget, Element, LimitError, Limits, Namespace, Node};

// ---------------------------------------------------------------------------------------------------------
// Global tokens (WAP-192-WBXML-20010725-a, section 7.1).

const SWITCH_PAGE: u8 = 0x00;
const END: u8 = 0x01;
const ENTITY: u8 = 0x02;
const STR_I: u8 = 0x03;
const LITERAL: u8 = 0x04;
const EXT_I_0: u8 = 0x40;
const EXT_I_2: u8 = 0x42;
const PI: u8 = 0x43;
const LITERAL_C: u8 = 0x44;
const EXT_T_0: u8 = 0x80;
const EXT_T_2: u8 = 0x82;
const STR_T: u8 = 0x83;
const LITERAL_A: u8 = 0x84;
const EXT_0: u8 = 0xC0;
const EXT_2: u8 = 0xC2;
const OPAQUE: u8 = 0xC3;
const LITERAL_AC: u8 = 0xC4;

/// Tag token bit: the element has content (ends with END).
const TAG_CONTENT: u8 = 0x40;
/// Tag token bit: the element has attributes (ended by END).
const TAG_ATTRIBUTES: u8 = 0x80;
/// The identity part of a tag token.
const TAG_ID: u8 = 0x3F;

/// The WBXML version the encoder writes (1.2).
const ENCODE_VERSION: u8 = 0x02;

/// IANA MIBenum of UTF-8, the only charset the encoder writes.
const CHARSET_UTF8: u32 = 106;
/// IANA MIBenum of US-ASCII (a subset of UTF-8, decoded as such).
const CHARSET_US_ASCII: u32 = 3;
/// Charset 0: "unknown", decoded as UTF-8.
const CHARSET_UNKNOWN: u32 = 0;

/// Longest mb_u_int32 accepted: 5 bytes carry 35 bits, enough for any u32.
const MB_U_INT32_MAX_BYTES: usize = 5;

// ---------------------------------------------------------------------------------------------------------
// Public identifiers, from libwbxml 0.11.8 `src/wbxml_tables.h` (the same values Debian's libwbxml2 uses).

/// Numeric public ID 1: "unknown or missing public identifier" (WAP-192 section 7.2.1).
const PUBLIC_ID_UNKNOWN: u32 = 0x01;
/// `-//SYNCML//DTD SyncML 1.1//EN`.
const PUBLIC_ID_SYNCML11: u32 = 0x0FD3;
/// `-//SYNCML//DTD SyncML 1.2//EN`.
const PUBLIC_ID_SYNCML12: u32 = 0x1201;
/// `-//SYNCML//DTD MetInf 1.2//EN`.
const PUBLIC_ID_METINF12: u32 = 0x1202;

/// The formal public identifier of SyncML 1.2.
const FPI_SYNCML12: &str = "-//SYNCML//DTD SyncML 1.2//EN";
/// The formal public identifier of SyncML 1.1.
const FPI_SYNCML11: &str = "-//SYNCML//DTD SyncML 1.1//EN";
/// The formal public identifier of MetInf 1.2.
const FPI_METINF12: &str = "-//SYNCML//DTD MetInf 1.2//EN";
/// The formal public identifier of the DM DDF 1.2 (TNDS) DTD. It has no numeric WBXML public ID
/// (libwbxml: `WBXML_PUBLIC_ID_SYNCML_DMDDF12 = WBXML_PUBLIC_ID_UNKNOWN`), so it is carried as a
/// string-table reference.
const FPI_DMDDF12: &str = "-//OMA//DTD-DM-DDF 1.2//EN";

/// Numeric public IDs we recognise but do not decode, named for error messages (libwbxml `wbxml_tables.h`).
static OTHER_PUBLIC_IDS: &[(u32, &str)] = &[
    (0x0FD1, "-//SYNCML//DTD SyncML 1.0//EN"),
    (0x0FD2, "-//SYNCML//DTD DevInf 1.0//EN"),
    (0x0FD4, "-//SYNCML//DTD DevInf 1.1//EN"),
    (0x1203, "-//SYNCML//DTD DevInf 1.2//EN"),
];

// ---------------------------------------------------------------------------------------------------------
// Tag tables. Source: libwbxml 0.11.8 `src/wbxml_tables.c`, `sv_syncml_syncml12_tag_table` (code pages 0
// and 1) and `sv_syncml_dmddf12_tag_table` (code page 2), which follow OMA-TS-SyncML_RepPro-V1_2,
// OMA-TS-SyncML_MetaInfo-V1_2 and OMA-TS-DM_TND-V1_2. Token 0x30 of page 0 is reserved.

/// Code page 0: SyncML (`SYNCML:SYNCML1.2`).
static SYNCML_TAGS: &[(u8, &str)] = &[
    (0x05, "Add"),
    (0x06, "Alert"),
    (0x07, "Archive"),
    (0x08, "Atomic"),
    (0x09, "Chal"),
    (0x0A, "Cmd"),
    (0x0B, "CmdID"),
    (0x0C, "CmdRef"),
    (0x0D, "Copy"),
    (0x0E, "Cred"),
    (0x0F, "Data"),
    (0x10, "Delete"),
    (0x11, "Exec"),
    (0x12, "Final"),
    (0x13, "Get"),
    (0x14, "Item"),
    (0x15, "Lang"),
    (0x16, "LocName"),
    (0x17, "LocURI"),
    (0x18, "Map"),
    (0x19, "MapItem"),
    (0x1A, "Meta"),
    (0x1B, "MsgID"),
    (0x1C, "MsgRef"),
    (0x1D, "NoResp"),
    (0x1E, "NoResults"),
    (0x1F, "Put"),
    (0x20, "Replace"),
    (0x21, "RespURI"),
    (0x22, "Results"),
    (0x23, "Search"),
    (0x24, "Sequence"),
    (0x25, "SessionID"),
    (0x26, "SftDel"),
    (0x27, "Source"),
    (0x28, "SourceRef"),
    (0x29, "Status"),
    (0x2A, "Sync"),
    (0x2B, "SyncBody"),
    (0x2C, "SyncHdr"),
    (0x2D, "SyncML"),
    (0x2E, "Target"),
    (0x2F, "TargetRef"),
    (0x31, "VerDTD"),
    (0x32, "VerProto"),
    (0x33, "NumberOfChanges"),
    (0x34, "MoreData"),
    (0x35, "Field"),
    (0x36, "Filter"),
    (0x37, "Record"),
    (0x38, "FilterType"),
    (0x39, "SourceParent"),
    (0x3A, "TargetParent"),
    (0x3B, "Move"),
    (0x3C, "Correlator"),
];

/// Code page 1: MetInf (`syncml:metinf`).
static METINF_TAGS: &[(u8, &str)] = &[
    (0x05, "Anchor"),
    (0x06, "EMI"),
    (0x07, "Format"),
    (0x08, "FreeID"),
    (0x09, "FreeMem"),
    (0x0A, "Last"),
    (0x0B, "Mark"),
    (0x0C, "MaxMsgSize"),
    (0x0D, "Mem"),
    (0x0E, "MetInf"),
    (0x0F, "Next"),
    (0x10, "NextNonce"),
    (0x11, "SharedMem"),
    (0x12, "Size"),
    (0x13, "Type"),
    (0x14, "Version"),
    (0x15, "MaxObjSize"),
    (0x16, "FieldLevel"),
];

/// Code page 2: DM DDF (`syncml:dmddf1.2`). Note `Node` (0x24) and `node` (0x25) differ only in case.
static DDF_TAGS: &[(u8, &str)] = &[
    (0x05, "AccessType"),
    (0x06, "ACL"),
    (0x07, "Add"),
    (0x08, "b64"),
    (0x09, "bin"),
    (0x0A, "bool"),
    (0x0B, "chr"),
    (0x0C, "CaseSense"),
    (0x0D, "CIS"),
    (0x0E, "Copy"),
    (0x0F, "CS"),
    (0x10, "date"),
    (0x11, "DDFName"),
    (0x12, "DefaultValue"),
    (0x13, "Delete"),
    (0x14, "Description"),
    (0x15, "DFFormat"),
    (0x16, "DFProperties"),
    (0x17, "DFTitle"),
    (0x18, "DFType"),
    (0x19, "Dynamic"),
    (0x1A, "Exec"),
    (0x1B, "float"),
    (0x1C, "Format"),
    (0x1D, "Get"),
    (0x1E, "int"),
    (0x1F, "Man"),
    (0x20, "MgmtTree"),
    (0x21, "MIME"),
    (0x22, "Mod"),
    (0x23, "Name"),
    (0x24, "Node"),
    (0x25, "node"),
    (0x26, "NodeName"),
    (0x27, "null"),
    (0x28, "Occurrence"),
    (0x29, "One"),
    (0x2A, "OneOrMore"),
    (0x2B, "OneOrN"),
    (0x2C, "Path"),
    (0x2D, "Permanent"),
    (0x2E, "Replace"),
    (0x2F, "RTProperties"),
    (0x30, "Scope"),
    (0x31, "Size"),
    (0x32, "time"),
    (0x33, "Title"),
    (0x34, "TStamp"),
    (0x35, "Type"),
    (0x36, "Value"),
    (0x37, "VerDTD"),
    (0x38, "VerNo"),
    (0x39, "xml"),
    (0x3A, "ZeroOrMore"),
    (0x3B, "ZeroOrN"),
    (0x3C, "ZeroOrOne"),
];

/// The code page number of a namespace.
fn page_of(ns: Namespace) -> u8 {
    match ns {
        Namespace::SyncMl => 0,
        Namespace::MetInf => 1,
        Namespace::Ddf => 2,
    }
}

/// The namespace of a code page, if it is one of ours.
fn namespace_of(page: u8) -> Option<Namespace> {
    match page {
        0 => Some(Namespace::SyncMl),
        1 => Some(Namespace::MetInf),
        2 => Some(Namespace::Ddf),
        _ => None,
    }
}

/// The tag table of a namespace.
fn tags_of(ns: Namespace) -> &'static [(u8, &'static str)] {
    match ns {
        Namespace::SyncMl => SYNCML_TAGS,
        Namespace::MetInf => METINF_TAGS,
        Namespace::Ddf => DDF_TAGS,
    }
}

/// The name of tag identity `id` in namespace `ns`.
fn tag_name(ns: Namespace, id: u8) -> Option<&'static str> {
    tags_of(ns).iter().find(|(t, _)| *t == id).map(|(_, n)| *n)
}

/// The tag identity of `name` in namespace `ns` (case-sensitive).
fn tag_token(ns: Namespace, name: &str) -> Option<u8> {
    tags_of(ns)
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(t, _)| *t)
}

// ---------------------------------------------------------------------------------------------------------
// Errors.

/// What went wrong while decoding or encoding WBXML. Decoding errors carry the byte `offset` in the input.
#[derive(Debug, Error)]
pub enum WbxmlError {
    /// The input ended in the middle of a header field, token, string or element.
    #[error("WBXML truncated at byte {offset}: expected {expected}")]
    Truncated {
        /// Where the missing bytes should have been.
        offset: usize,
        /// What was being read.
        expected: &'static str,
    },
    /// The version byte is not 0x01-0x03 (WBXML 1.1-1.3).
    #[error("unsupported WBXML version byte {version:#04x} at byte {offset}")]
    BadVersion {
        /// Offset of the version byte.
        offset: usize,
        /// The version byte found.
        version: u8,
    },
    /// The public identifier is not SyncML 1.1/1.2, MetInf 1.2 or DM DDF 1.2.
    #[error("unsupported public ID {public_id} at byte {offset}")]
    UnknownPublicId {
        /// Offset of the public ID field.
        offset: usize,
        /// The ID, as a number and, where known, its formal name, or the string found.
        public_id: String,
    },
    /// The charset is not UTF-8 (106), US-ASCII (3) or unknown (0).
    #[error("unsupported charset MIBenum {charset} at byte {offset}")]
    UnsupportedCharset {
        /// Offset of the charset field.
        offset: usize,
        /// The MIBenum found.
        charset: u32,
    },
    /// An mb_u_int32 longer than 5 bytes or larger than 2^32-1.
    #[error("malformed mb_u_int32 at byte {offset}: {reason}")]
    BadMbUint32 {
        /// Offset of its first byte.
        offset: usize,
        /// `"longer than 5 bytes"` or `"overflows 32 bits"`.
        reason: &'static str,
    },
    /// A string-table reference (STR_T, LITERAL, public ID) outside the table.
    #[error(
        "string table index {index} out of range (table is {table_len} bytes) at byte {offset}"
    )]
    StringTableIndex {
        /// Offset of the token.
        offset: usize,
        /// The index found.
        index: u32,
        /// Length of the string table.
        table_len: usize,
    },
    /// An inline string or string-table entry without its terminating NUL.
    #[error("unterminated {what} at byte {offset}")]
    UnterminatedString {
        /// Offset of the string's first byte (or of the referencing token).
        offset: usize,
        /// `"inline string"` or `"string table entry"`.
        what: &'static str,
    },
    /// A tag token that has no name on the current code page.
    #[error("unknown tag token {token:#04x} on code page {page} at byte {offset}")]
    UnknownToken {
        /// Offset of the token.
        offset: usize,
        /// The current code page.
        page: u8,
        /// The token byte.
        token: u8,
    },
    /// A SWITCH_PAGE to a code page other than 0 (SyncML), 1 (MetInf) or 2 (DM DDF).
    #[error("unknown code page {page} at byte {offset}")]
    UnknownCodePage {
        /// Offset of the SWITCH_PAGE token.
        offset: usize,
        /// The page requested.
        page: u8,
    },
    /// An END with no open element.
    #[error("END without an open element at byte {offset}")]
    UnbalancedEnd {
        /// Offset of the END token.
        offset: usize,
    },
    /// Anything but a processing instruction after the root element closed.
    #[error("token {token:#04x} after the root element at byte {offset}")]
    ContentAfterRoot {
        /// Offset of the token.
        offset: usize,
        /// The token byte.
        token: u8,
    },
    /// A global token where it cannot occur (character data before the root element).
    #[error("token {token:#04x} not allowed {context} at byte {offset}")]
    MisplacedToken {
        /// Offset of the token.
        offset: usize,
        /// The token byte.
        token: u8,
        /// Where it was found.
        context: &'static str,
    },
    /// An extension token (EXT_I, EXT_T, EXT); SyncML defines none.
    #[error("extension token {token:#04x} at byte {offset}: SyncML defines no extensions")]
    Extension {
        /// Offset of the token.
        offset: usize,
        /// The token byte.
        token: u8,
    },
    /// A character entity that is not a Unicode scalar value allowed in XML.
    #[error("invalid character entity {code:#x} at byte {offset}")]
    BadEntity {
        /// Offset of the ENTITY token.
        offset: usize,
        /// The code point found.
        code: u32,
    },
    /// A string that is not valid UTF-8.
    #[error("invalid UTF-8 in {what} at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the string's first byte.
        offset: usize,
        /// What the string was.
        what: &'static str,
    },
    /// A LITERAL tag whose name is empty.
    #[error("empty element name at byte {offset}")]
    EmptyName {
        /// Offset of the LITERAL token.
        offset: usize,
    },
    /// The decoded character data and names (after string-table expansion) exceed
    /// `Limits::max_message_bytes`: the same document in XML would be larger than the message limit.
    #[error("decoded content exceeds {limit} bytes at byte {offset}")]
    DecodedTooLarge {
        /// Offset of the token that crossed the limit.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// A decoding limit was exceeded.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Encoding: text with a NUL character cannot be written as STR_I.
    #[error("text in <{element}> contains a NUL character")]
    NulInText {
        /// The element holding the text.
        element: String,
    },
    /// Encoding: an element name that is empty or contains NUL cannot be written as LITERAL.
    #[error("element name {name:?} cannot be encoded")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Encoding: a string or opaque run longer than WBXML can express (2^32-1 bytes).
    #[error("content of <{element}> is {size} bytes, more than WBXML can carry")]
    TooLarge {
        /// The element holding it.
        element: String,
        /// Its size.
        size: usize,
    },
}

// ---------------------------------------------------------------------------------------------------------
// Reading.

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Reader<'a> {
        Reader { input, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    fn byte(&mut self, expected: &'static str) -> Result<u8, WbxmlError> {
        let b = *self.input.get(self.pos).ok_or(WbxmlError::Truncated {
            offset: self.pos,
            expected,
        })?;
        self.pos += 1;
        Ok(b)
    }

    fn mb_u_int32(&mut self, expected: &'static str) -> Result<u32, WbxmlError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for _ in 0..MB_U_INT32_MAX_BYTES {
            let b = self.byte(expected)?;
            value = (value << 7) | u64::from(b & 0x7F);
            if b & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| WbxmlError::BadMbUint32 {
                    offset: start,
                    reason: "overflows 32 bits",
                });
            }
        }
        Err(WbxmlError::BadMbUint32 {
            offset: start,
            reason: "longer than 5 bytes",
        })
    }

    fn take(&mut self, len: usize, expected: &'static str) -> Result<&'a [u8], WbxmlError> {
        let end = self.pos.checked_add(len).ok_or(WbxmlError::Truncated {
            offset: self.pos,
            expected,
        })?;
        let slice = self.input.get(self.pos..end).ok_or(WbxmlError::Truncated {
            offset: self.input.len(),
            expected,
        })?;
        self.pos = end;
        Ok(slice)
    }

    /// An inline NUL-terminated string, without its NUL; nothing is allocated.
    fn termstr(&mut self) -> Result<&'a [u8], WbxmlError> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WbxmlError::UnterminatedString {
                offset: start,
                what: "inline string",
            })?;
        let s = rest.get(..len).unwrap_or_default();
        self.pos = start.saturating_add(len).saturating_add(1);
        Ok(s)
    }
}

/// What kind of document the public ID announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocKind {
    /// SyncML 1.1 or 1.2 (a DM message).
    SyncMl,
    /// MetInf 1.2.
    MetInf,
    /// DM DDF 1.2 (TNDS).
    Ddf,
    /// Public ID 1, unknown or missing: decoded with the same tables.
    Unknown,
}

/// The parsed WBXML header.
struct Header<'a> {
    kind: DocKind,
    /// The string table.
    table: &'a [u8],
}

/// The NUL-terminated string starting at `index` in the string table, without its NUL.
fn table_str(table: &[u8], index: u32, offset: usize) -> Result<&[u8], WbxmlError> {
    let start = usize::try_from(index).unwrap_or(usize::MAX);
    let rest =
        table
            .get(start..)
            .filter(|r| !r.is_empty())
            .ok_or(WbxmlError::StringTableIndex {
                offset,
                index,
                table_len: table.len(),
            })?;
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(WbxmlError::UnterminatedString {
            offset,
            what: "string table entry",
        })?;
    Ok(rest.get(..len).unwrap_or_default())
}

/// The document kind of a formal public identifier.
fn kind_of_fpi(fpi: &str) -> Option<DocKind> {
    let fpi = fpi.trim();
    if fpi.eq_ignore_ascii_case(FPI_SYNCML12) || fpi.eq_ignore_ascii_case(FPI_SYNCML11) {
        Some(DocKind::SyncMl)
    } else if fpi.eq_ignore_ascii_case(FPI_METINF12) {
        Some(DocKind::MetInf)
    } else if fpi.eq_ignore_ascii_case(FPI_DMDDF12) {
        Some(DocKind::Ddf)
    } else {
        None
    }
}

/// The document kind of a numeric public ID, or an error naming it.
fn kind_of_number(id: u32, offset: usize) -> Result<DocKind, WbxmlError> {
    match id {
        PUBLIC_ID_SYNCML12 | PUBLIC_ID_SYNCML11 => Ok(DocKind::SyncMl),
        PUBLIC_ID_METINF12 => Ok(DocKind::MetInf),
        PUBLIC_ID_UNKNOWN => Ok(DocKind::Unknown),
        other => {
            let public_id = match OTHER_PUBLIC_IDS.iter().find(|(n, _)| *n == other) {
                Some((_, name)) => format!("{other:#06x} ({name})"),
                None => format!("{other:#06x}"),
            };
            Err(WbxmlError::UnknownPublicId { offset, public_id })
        }
    }
}

/// Read the header: version, public ID, charset and string table.
fn read_header<'a>(r: &mut Reader<'a>) -> Result<Header<'a>, WbxmlError> {
    let version_at = r.pos;
    let version = r.byte("version")?;
    if !(0x01..=0x03).contains(&version) {
        return Err(WbxmlError::BadVersion {
            offset: version_at,
            version,
        });
    }
    let public_at = r.pos;
    let public_id = r.mb_u_int32("public ID")?;
    let public_index = if public_id == 0 {
        Some(r.mb_u_int32("public ID string index")?)
    } else {
        None
    };
    let charset_at = r.pos;
    let charset = r.mb_u_int32("charset")?;
    if !matches!(charset, CHARSET_UTF8 | CHARSET_US_ASCII | CHARSET_UNKNOWN) {
        return Err(WbxmlError::UnsupportedCharset {
            offset: charset_at,
            charset,
        });
    }
    let table_len = r.mb_u_int32("string table length")?;
    let table_len = usize::try_from(table_len).unwrap_or(usize::MAX);
    let table = r.take(table_len, "string table")?;
    let kind = match public_index {
        None => kind_of_number(public_id, public_at)?,
        Some(index) => {
            let raw = table_str(table, index, public_at)?;
            let fpi = String::from_utf8_lossy(raw);
            kind_of_fpi(&fpi).ok_or_else(|| WbxmlError::UnknownPublicId {
                offset: public_at,
                public_id: format!("{fpi:?}"),
            })?
        }
    };
    Ok(Header { kind, table })
}

/// True when `bytes` start with a WBXML header (version 1.1-1.3) announcing a SyncML 1.1/1.2 or DM DDF 1.2
/// document, e.g. a nested TNDS or DM document carried as OPAQUE inside `<Data>`.
pub fn looks_like_wbxml(bytes: &[u8]) -> bool {
    let mut r = Reader::new(bytes);
    matches!(
        read_header(&mut r),
        Ok(Header {
            kind: DocKind::SyncMl | DocKind::Ddf,
            ..
        })
    )
}

/// The decoding state of one document.
struct Decoder<'a> {
    r: Reader<'a>,
    table: &'a [u8],
    budget: Budget,
    limits: Limits,
    /// Bytes of character data, opaque data and literal names produced so far.
    produced: usize,
}

impl<'a> Decoder<'a> {
    /// Account for `n` more decoded bytes, refusing string-table amplification past the message limit.
    fn produce(&mut self, n: usize, offset: usize) -> Result<(), WbxmlError> {
        self.produced = self.produced.saturating_add(n);
        if self.produced > self.limits.max_message_bytes {
            return Err(WbxmlError::DecodedTooLarge {
                offset,
                limit: self.limits.max_message_bytes,
            });
        }
        Ok(())
    }

    /// Skip an attribute list (after a tag with the attribute bit, or a PI) up to and including its END.
    /// SyncML DM has no attributes; they are read for their length only. Attribute code pages are a
    /// separate state from tag code pages and are ignored.
    fn skip_attributes(&mut self) -> Result<(), WbxmlError> {
        loop {
            let at = self.r.pos;
            let tok = self.r.byte("attribute or END")?;
            match tok {
                END => return Ok(()),
                SWITCH_PAGE => {
                    self.r.byte("attribute code page")?;
                }
                STR_I | EXT_I_0..=EXT_I_2 => {
                    self.r.termstr()?;
                }
                STR_T | LITERAL => {
                    // Bounds only: scanning the entry for each reference would let a large entry
                    // referenced many times cost quadratic time.
                    let index = self.r.mb_u_int32("string table index")?;
                    if usize::try_from(index).unwrap_or(usize::MAX) >= self.table.len() {
                        return Err(WbxmlError::StringTableIndex {
                            offset: at,
                            index,
                            table_len: self.table.len(),
                        });
                    }
                }
                ENTITY | EXT_T_0..=EXT_T_2 => {
                    self.r.mb_u_int32("entity or extension value")?;
                }
                OPAQUE => {
                    let len = self.r.mb_u_int32("opaque length")?;
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    self.r.take(len, "opaque data")?;
                }
                // EXT_0..EXT_2, attribute start and attribute value tokens carry no data.
                _ => {}
            }
        }
    }

    /// The element name a tag token stands for on `page`, and the namespace it belongs to.
    fn tag(
        &mut self,
        tok: u8,
        page: u8,
        at: usize,
    ) -> Result<(Namespace, Cow<'static, str>), WbxmlError> {
        let ns = namespace_of(page).ok_or(WbxmlError::UnknownCodePage { offset: at, page })?;
        if matches!(tok, LITERAL | LITERAL_C | LITERAL_A | LITERAL_AC) {
            let index = self.r.mb_u_int32("LITERAL name index")?;
            let raw = table_str(self.table, index, at)?;
            if raw.is_empty() {
                return Err(WbxmlError::EmptyName { offset: at });
            }
            self.budget.string("LITERAL", raw.len())?;
            self.produce(raw.len(), at)?;
            let name = std::str::from_utf8(raw).map_err(|_| WbxmlError::InvalidUtf8 {
                offset: at,
                what: "LITERAL name",
            })?;
            return Ok((ns, Cow::Owned(name.to_owned())));
        }
        let name = tag_name(ns, tok & TAG_ID).ok_or(WbxmlError::UnknownToken {
            offset: at,
            page,
            token: tok,
        })?;
        Ok((ns, Cow::Borrowed(name)))
    }

    /// Append character data to `el`, merging with a preceding text node, after checking the limits.
    fn push_text(&mut self, el: &mut Element, s: &str, at: usize) -> Result<(), WbxmlError> {
        if s.is_empty() {
            return Ok(());
        }
        self.produce(s.len(), at)?;
        if let Some(Node::Text(prev)) = el.content.last_mut() {
            self.budget
                .string(&el.name, prev.len().saturating_add(s.len()))?;
            prev.push_str(s);
        } else {
            self.budget.string(&el.name, s.len())?;
            el.content.push(Node::Text(s.to_owned()));
        }
        Ok(())
    }

    /// Read the content token `tok` (STR_I, STR_T, ENTITY, OPAQUE) into `el`.
    fn content(&mut self, el: &mut Element, tok: u8, at: usize) -> Result<(), WbxmlError> {
        match tok {
            STR_I => {
                let start = self.r.pos;
                let raw = self.r.termstr()?;
                let s = std::str::from_utf8(raw).map_err(|_| WbxmlError::InvalidUtf8 {
                    offset: start,
                    what: "inline string",
                })?;
                self.push_text(el, s, at)
            }
            STR_T => {
                let index = self.r.mb_u_int32("string table index")?;
                let raw = table_str(self.table, index, at)?;
                let s = std::str::from_utf8(raw).map_err(|_| WbxmlError::InvalidUtf8 {
                    offset: at,
                    what: "string table entry",
                })?;
                self.push_text(el, s, at)
            }
            ENTITY => {
                let code = self.r.mb_u_int32("entity code")?;
                let c = char::from_u32(code)
                    .filter(|&c| c != '\0')
                    .ok_or(WbxmlError::BadEntity { offset: at, code })?;
                let mut buf = [0u8; 4];
                self.push_text(el, c.encode_utf8(&mut buf), at)
            }
            _ => {
                let len = self.r.mb_u_int32("opaque length")?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                self.budget.string(&el.name, len)?;
                if len > self.r.remaining() {
                    return Err(WbxmlError::Truncated {
                        offset: self.r.input.len(),
                        expected: "opaque data",
                    });
                }
                self.produce(len, at)?;
                let data = self.r.take(len, "opaque data")?;
                el.content.push(Node::Opaque(data.to_vec()));
                Ok(())
            }
        }
    }

    /// Decode the body: `*pi element *pi`, with SWITCH_PAGE allowed before any tag.
    fn body(&mut self) -> Result<Element, WbxmlError> {
        let mut page: u8 = 0;
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let at = self.r.pos;
            let Ok(tok) = self.r.byte("token") else {
                return match (root, stack.last()) {
                    (Some(root), _) => Ok(root),
                    (None, Some(_)) => Err(WbxmlError::Truncated {
                        offset: at,
                        expected: "END of an open element",
                    }),
                    (None, None) => Err(WbxmlError::Truncated {
                        offset: at,
                        expected: "root element",
                    }),
                };
            };
            if tok == PI {
                self.skip_attributes()?;
                continue;
            }
            if root.is_some() {
                return Err(WbxmlError::ContentAfterRoot {
                    offset: at,
                    token: tok,
                });
            }
            match tok {
                SWITCH_PAGE => {
                    let new_page = self.r.byte("code page")?;
                    if namespace_of(new_page).is_none() {
                        return Err(WbxmlError::UnknownCodePage {
                            offset: at,
                            page: new_page,
                        });
                    }
                    page = new_page;
                }
                END => {
                    let done = stack
                        .pop()
                        .ok_or(WbxmlError::UnbalancedEnd { offset: at })?;
                    match stack.last_mut() {
                        Some(parent) => parent.content.push(Node::Element(done)),
                        None => root = Some(done),
                    }
                }
                STR_I | STR_T | ENTITY | OPAQUE => {
                    let Some(mut el) = stack.pop() else {
                        return Err(WbxmlError::MisplacedToken {
                            offset: at,
                            token: tok,
                            context: "before the root element",
                        });
                    };
                    let res = self.content(&mut el, tok, at);
                    stack.push(el);
                    res?;
                }
                EXT_I_0..=EXT_I_2 | EXT_T_0..=EXT_T_2 | EXT_0..=EXT_2 => {
                    return Err(WbxmlError::Extension {
                        offset: at,
                        token: tok,
                    });
                }
                _ => {
                    let (ns, name) = self.tag(tok, page, at)?;
                    self.budget.open(&name, stack.len().saturating_add(1))?;
                    if tok & TAG_ATTRIBUTES != 0 {
                        self.skip_attributes()?;
                    }
                    let el = Element {
                        ns,
                        name,
                        content: Vec::new(),
                    };
                    if tok & TAG_CONTENT != 0 {
                        stack.push(el);
                    } else {
                        match stack.last_mut() {
                            Some(parent) => parent.content.push(Node::Element(el)),
                            None => root = Some(el),
                        }
                    }
                }
            }
        }
    }
}

/// Decode a WBXML document (SyncML DM 1.1/1.2 message, MetInf or TNDS `MgmtTree`) into an element tree,
/// within `limits`: message size first, then depth and element count per tag, and every string or opaque
/// run (adjacent STR_I / STR_T / ENTITY merged into one text node) before it is allocated. The character
/// data produced in total, string-table references expanded, may not exceed `max_message_bytes` either.
/// Names from the code-page tables are borrowed, LITERAL names owned. Attributes and processing
/// instructions are skipped. Nested WBXML documents carried as OPAQUE stay `Node::Opaque`; see
/// [`looks_like_wbxml`].
pub fn decode(input: &[u8], limits: &Limits) -> Result<Element, WbxmlError> {
    let budget = Budget::start(*limits, input.len())?;
    let mut r = Reader::new(input);
    // The document kind only decides which public IDs are accepted: all kinds share code pages 0-2.
    let header = read_header(&mut r)?;
    let mut d = Decoder {
        r,
        table: header.table,
        budget,
        limits: *limits,
        produced: 0,
    };
    d.body()
}

// ---------------------------------------------------------------------------------------------------------
// Writing.

/// Append an mb_u_int32.
fn put_mb_u_int32(out: &mut Vec<u8>, value: u32) {
    // Most significant group first; every group but the last has the continuation bit.
    let groups = (1..MB_U_INT32_MAX_BYTES)
        .rev()
        .filter(|&i| value >> (7 * i) != 0)
        .map(|i| ((value >> (7 * i)) & 0x7F) as u8 | 0x80);
    out.extend(groups);
    out.push((value & 0x7F) as u8);
}

/// The encoding state: body bytes, string table and current tag code page.
struct Encoder {
    body: Vec<u8>,
    table: Vec<u8>,
    /// Offsets of strings already in the table.
    entries: HashMap<String, u32>,
    page: u8,
}

impl Encoder {
    /// The string-table index of `s`, adding it if needed.
    fn table_index(&mut self, s: &str) -> Result<u32, WbxmlError> {
        if let Some(&i) = self.entries.get(s) {
            return Ok(i);
        }
        let index = u32::try_from(self.table.len()).map_err(|_| WbxmlError::TooLarge {
            element: s.to_owned(),
            size: self.table.len(),
        })?;
        self.table.extend_from_slice(s.as_bytes());
        self.table.push(0);
        self.entries.insert(s.to_owned(), index);
        Ok(index)
    }

    fn switch_to(&mut self, page: u8) {
        if self.page != page {
            self.body.push(SWITCH_PAGE);
            self.body.push(page);
            self.page = page;
        }
    }

    fn element(&mut self, el: &Element) -> Result<(), WbxmlError> {
        let has_content = el
            .content
            .iter()
            .any(|n| !matches!(n, Node::Text(t) if t.is_empty()));
        let content_bit = if has_content { TAG_CONTENT } else { 0 };
        let own_page = page_of(el.ns);
        let known = tag_token(el.ns, &el.name)
            .map(|t| (own_page, t))
            .or_else(|| {
                [Namespace::SyncMl, Namespace::MetInf, Namespace::Ddf]
                    .into_iter()
                    .find_map(|ns| tag_token(ns, &el.name).map(|t| (page_of(ns), t)))
            });
        match known {
            Some((page, token)) => {
                self.switch_to(page);
                self.body.push(token | content_bit);
            }
            None => {
                if el.name.is_empty() || el.name.contains('\0') {
                    return Err(WbxmlError::InvalidName {
                        name: el.name.to_string(),
                    });
                }
                // A LITERAL tag takes the namespace of the current page when decoded.
                self.switch_to(own_page);
                let index = self.table_index(&el.name)?;
                self.body.push(LITERAL | content_bit);
                put_mb_u_int32(&mut self.body, index);
            }
        }
        if !has_content {
            return Ok(());
        }
        // Adjacent text nodes are written as one STR_I: it is shorter, and libwbxml 0.11.8's wbxml2xml
        // nests CDATA sections (invalid XML) for a `Data` under Add/Replace holding several strings.
        let mut in_string = false;
        for node in &el.content {
            if in_string && !matches!(node, Node::Text(_)) {
                self.body.push(0);
                in_string = false;
            }
            match node {
                Node::Element(child) => self.element(child)?,
                Node::Text(t) if t.is_empty() => {}
                Node::Text(t) => {
                    if t.contains('\0') {
                        return Err(WbxmlError::NulInText {
                            element: el.name.to_string(),
                        });
                    }
                    if !in_string {
                        self.body.push(STR_I);
                        in_string = true;
                    }
                    self.body.extend_from_slice(t.as_bytes());
                }
                Node::Opaque(data) => {
                    let len = u32::try_from(data.len()).map_err(|_| WbxmlError::TooLarge {
                        element: el.name.to_string(),
                        size: data.len(),
                    })?;
                    self.body.push(OPAQUE);
                    put_mb_u_int32(&mut self.body, len);
                    self.body.extend_from_slice(data);
                }
            }
        }
        if in_string {
            self.body.push(0);
        }
        self.body.push(END);
        Ok(())
    }
}

/// Encode an element tree as WBXML 1.2, UTF-8. The public ID follows the root's namespace: SyncML ->
/// 0x1201, MetInf -> 0x1202, DM DDF -> `-//OMA//DTD-DM-DDF 1.2//EN` through the string table. Text is
/// written as STR_I (adjacent text nodes as one), `Node::Opaque` as OPAQUE (a nested WBXML document stays
/// opaque bytes); an element whose name is missing from its namespace's page but present on another is
/// written from that page, a name on no page as LITERAL through the string table. Recursion follows the
/// tree's depth, which our model and the limit-checked decoders bound.
pub fn encode(root: &Element) -> Result<Vec<u8>, WbxmlError> {
    let mut enc = Encoder {
        body: Vec::new(),
        table: Vec::new(),
        entries: HashMap::new(),
        page: 0,
    };
    let public_index = match root.ns {
        Namespace::Ddf => Some(enc.table_index(FPI_DMDDF12)?),
        Namespace::SyncMl | Namespace::MetInf => None,
    };
    enc.element(root)?;
    let table_len = u32::try_from(enc.table.len()).map_err(|_| WbxmlError::TooLarge {
        element: root.name.to_string(),
        size: enc.table.len(),
    })?;
    let mut out = Vec::with_capacity(
        enc.body
            .len()
            .saturating_add(enc.table.len())
            .saturating_add(8),
    );
    out.push(ENCODE_VERSION);
    match (root.ns, public_index) {
        (_, Some(index)) => {
            put_mb_u_int32(&mut out, 0);
            put_mb_u_int32(&mut out, index);
        }
        (Namespace::MetInf, None) => put_mb_u_int32(&mut out, PUBLIC_ID_METINF12),
        (_, None) => put_mb_u_int32(&mut out, PUBLIC_ID_SYNCML12),
    }
    put_mb_u_int32(&mut out, CHARSET_UTF8);
    put_mb_u_int32(&mut out, table_len);
    out.extend_from_slice(&enc.table);
    out.extend_from_slice(&enc.body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A WBXML 1.3 SyncML 1.2 document (numeric public ID, UTF-8, empty string table) around `body`.
    fn doc(body: &[u8]) -> Vec<u8> {
        let mut d = vec![0x03, 0xA4, 0x01, 0x6A, 0x00];
        d.extend_from_slice(body);
        d
    }

    /// A document with string table `table` around `body`.
    fn doc_with_table(table: &[u8], body: &[u8]) -> Vec<u8> {
        let mut d = vec![0x03, 0xA4, 0x01, 0x6A];
        put_mb_u_int32(&mut d, table.len() as u32);
        d.extend_from_slice(table);
        d.extend_from_slice(body);
        d
    }

    fn dec(bytes: &[u8]) -> Result<Element, WbxmlError> {
        decode(bytes, &Limits::default())
    }

    /// `<SyncML><Final/></SyncML>`.
    const MINIMAL_BODY: &[u8] = &[0x6D, 0x12, 0x01];

    fn minimal() -> Element {
        Element::syncml("SyncML").child(Element::syncml("Final"))
    }

    // ----- header -----

    #[test]
    fn accepts_versions_1_1_to_1_3() {
        for v in [0x01, 0x02, 0x03] {
            let mut d = doc(MINIMAL_BODY);
            d[0] = v;
            assert_eq!(dec(&d).unwrap(), minimal(), "version {v}");
        }
    }

    #[test]
    fn rejects_other_versions() {
        for v in [0x00, 0x04, 0x13] {
            let mut d = doc(MINIMAL_BODY);
            d[0] = v;
            assert!(
                matches!(dec(&d), Err(WbxmlError::BadVersion { offset: 0, version }) if version == v)
            );
        }
    }

    #[test]
    fn accepts_numeric_public_ids() {
        for id in [
            PUBLIC_ID_SYNCML12,
            PUBLIC_ID_SYNCML11,
            PUBLIC_ID_METINF12,
            PUBLIC_ID_UNKNOWN,
        ] {
            let mut d = vec![0x02];
            put_mb_u_int32(&mut d, id);
            d.extend_from_slice(&[0x6A, 0x00]);
            d.extend_from_slice(MINIMAL_BODY);
            assert_eq!(dec(&d).unwrap(), minimal(), "public ID {id:#x}");
        }
    }

    #[test]
    fn accepts_public_id_from_string_table() {
        for fpi in [
            FPI_SYNCML12,
            FPI_SYNCML11,
            FPI_DMDDF12,
            "-//syncml//dtd syncml 1.2//en",
        ] {
            // The FPI at a non-zero index, after another string.
            let mut table = b"x\0".to_vec();
            table.extend_from_slice(fpi.as_bytes());
            table.push(0);
            let mut d = vec![0x02, 0x00, 0x02, 0x6A];
            put_mb_u_int32(&mut d, table.len() as u32);
            d.extend_from_slice(&table);
            d.extend_from_slice(MINIMAL_BODY);
            assert_eq!(dec(&d).unwrap(), minimal(), "{fpi}");
        }
    }

    #[test]
    fn unknown_public_ids_are_named() {
        let mut d = vec![0x02, 0xA4, 0x03, 0x6A, 0x00];
        d.extend_from_slice(MINIMAL_BODY);
        match dec(&d) {
            Err(WbxmlError::UnknownPublicId {
                offset: 1,
                public_id,
            }) => {
                assert!(public_id.contains("DevInf 1.2"), "{public_id}");
            }
            other => panic!("{other:?}"),
        }
        let table = b"-//W3C//DTD XHTML 1.0//EN\0";
        let mut d = vec![0x02, 0x00, 0x00, 0x6A, table.len() as u8];
        d.extend_from_slice(table);
        d.extend_from_slice(MINIMAL_BODY);
        match dec(&d) {
            Err(WbxmlError::UnknownPublicId { public_id, .. }) => {
                assert!(public_id.contains("XHTML"), "{public_id}");
            }
            other => panic!("{other:?}"),
        }
        // Public ID index outside the string table.
        let d = [0x02, 0x00, 0x05, 0x6A, 0x00, 0x6D, 0x12, 0x01];
        assert!(matches!(
            dec(&d),
            Err(WbxmlError::StringTableIndex { index: 5, .. })
        ));
    }

    #[test]
    fn charsets() {
        for cs in [106u8, 0, 3] {
            let mut d = doc(MINIMAL_BODY);
            d[3] = cs;
            assert_eq!(dec(&d).unwrap(), minimal(), "charset {cs}");
        }
        let mut d = doc(MINIMAL_BODY);
        d[3] = 4; // ISO-8859-1
        assert!(matches!(
            dec(&d),
            Err(WbxmlError::UnsupportedCharset {
                offset: 3,
                charset: 4
            })
        ));
    }

    // ----- mb_u_int32 -----

    #[test]
    fn mb_u_int32_round_trips_and_rejects_malformed() {
        for v in [0u32, 1, 0x7F, 0x80, 0x1201, 0x3FFF, 0x4000, u32::MAX] {
            let mut b = Vec::new();
            put_mb_u_int32(&mut b, v);
            let mut r = Reader::new(&b);
            assert_eq!(r.mb_u_int32("v").unwrap(), v);
            assert_eq!(r.pos, b.len());
        }
        let mut b = Vec::new();
        put_mb_u_int32(&mut b, 0x1201);
        assert_eq!(b, [0xA4, 0x01]);
        // Redundant leading zero groups are accepted up to 5 bytes.
        assert_eq!(
            Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x05])
                .mb_u_int32("v")
                .unwrap(),
            5
        );
        assert!(matches!(
            Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x05]).mb_u_int32("v"),
            Err(WbxmlError::BadMbUint32 {
                offset: 0,
                reason: "longer than 5 bytes"
            })
        ));
        assert!(matches!(
            Reader::new(&[0x90, 0x80, 0x80, 0x80, 0x00]).mb_u_int32("v"),
            Err(WbxmlError::BadMbUint32 {
                reason: "overflows 32 bits",
                ..
            })
        ));
        assert!(matches!(
            Reader::new(&[0x81]).mb_u_int32("v"),
            Err(WbxmlError::Truncated { offset: 1, .. })
        ));
        // In a document: an overlong string table length.
        let d = [0x02, 0xA4, 0x01, 0x6A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
        assert!(matches!(
            dec(&d),
            Err(WbxmlError::BadMbUint32 { offset: 4, .. })
        ));
    }

    // ----- truncation -----

    #[test]
    fn truncated_everywhere() {
        let full = doc(&[
            0x6D, 0x6C, 0x71, 0x03, b'1', b'.', b'2', 0x00, 0x01, 0x01, 0x01,
        ]);
        for cut in 0..full.len() {
            let err = dec(&full[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    WbxmlError::Truncated { .. } | WbxmlError::UnterminatedString { .. }
                ),
                "cut {cut}: {err:?}"
            );
        }
        assert!(dec(&full).is_ok());
        // A string table longer than the input.
        let d = [0x02, 0xA4, 0x01, 0x6A, 0x10, b'a'];
        assert!(matches!(
            dec(&d),
            Err(WbxmlError::Truncated {
                expected: "string table",
                ..
            })
        ));
        // An open element never closed.
        assert!(matches!(
            dec(&doc(&[0x6D, 0x52])),
            Err(WbxmlError::Truncated {
                expected: "END of an open element",
                ..
            })
        ));
        // No root at all.
        assert!(matches!(
            dec(&doc(&[])),
            Err(WbxmlError::Truncated {
                expected: "root element",
                ..
            })
        ));
        // OPAQUE longer than the input.
        assert!(matches!(
            dec(&doc(&[0x6D, 0xC3, 0x05, 1, 2])),
            Err(WbxmlError::Truncated {
                expected: "opaque data",
                ..
            })
        ));
        // STR_I without its NUL.
        assert!(matches!(
            dec(&doc(&[0x6D, 0x03, b'a', b'b'])),
            Err(WbxmlError::UnterminatedString {
                what: "inline string",
                ..
            })
        ));
    }

    // ----- content tokens -----

    #[test]
    fn str_i_text() {
        // <SyncML><SyncHdr><VerDTD>1.2</VerDTD></SyncHdr></SyncML>
        let e = dec(&doc(&[
            0x6D, 0x6C, 0x71, 0x03, b'1', b'.', b'2', 0x00, 0x01, 0x01, 0x01,
        ]))
        .unwrap();
        let expected = Element::syncml("SyncML")
            .child(Element::syncml("SyncHdr").child(Element::syncml("VerDTD").text("1.2")));
        assert_eq!(e, expected);
    }

    #[test]
    fn str_t_text_from_string_table() {
        let table = b"abc\0hello\0";
        // Index 4: "hello"; index 1: "bc" (the middle of a string is allowed).
        let e = dec(&doc_with_table(
            table,
            &[0x6D, 0x4F, 0x83, 0x04, 0x01, 0x4F, 0x83, 0x01, 0x01, 0x01],
        ))
        .unwrap();
        let expected = Element::syncml("SyncML")
            .child(Element::syncml("Data").text("hello"))
            .child(Element::syncml("Data").text("bc"));
        assert_eq!(e, expected);
        assert!(matches!(
            dec(&doc_with_table(table, &[0x6D, 0x83, 0x0A, 0x01])),
            Err(WbxmlError::StringTableIndex {
                index: 10,
                table_len: 10,
                ..
            })
        ));
        assert!(matches!(
            dec(&doc_with_table(b"abc", &[0x6D, 0x83, 0x00, 0x01])),
            Err(WbxmlError::UnterminatedString {
                what: "string table entry",
                ..
            })
        ));
    }

    #[test]
    fn entities_merge_with_adjacent_text() {
        // "caf" ENTITY(0xE9) "!" -> one text node "café!"
        let e = dec(&doc(&[
            0x6D, 0x03, b'c', b'a', b'f', 0x00, 0x02, 0x81, 0x69, 0x03, b'!', 0x00, 0x01,
        ]))
        .unwrap();
        assert_eq!(e.content, vec![Node::Text("café!".into())]);
        for bad in [[0x83, 0xB0, 0x00], [0x80, 0x80, 0x00]] {
            // 0xD800 (a surrogate) and 0.
            let mut body = vec![0x6D, 0x02];
            body.extend_from_slice(&bad);
            body.push(0x01);
            assert!(matches!(
                dec(&doc(&body)),
                Err(WbxmlError::BadEntity { offset: 6, .. })
            ));
        }
    }

    #[test]
    fn opaque_is_kept_as_bytes() {
        let e = dec(&doc(&[
            0x6D, 0x4F, 0xC3, 0x03, 0xFF, 0x00, 0x41, 0x01, 0x01,
        ]))
        .unwrap();
        let data = e.find("Data").unwrap();
        assert_eq!(data.content, vec![Node::Opaque(vec![0xFF, 0x00, 0x41])]);
        // An empty OPAQUE is kept too.
        let e = dec(&doc(&[0x6D, 0xC3, 0x00, 0x01])).unwrap();
        assert_eq!(e.content, vec![Node::Opaque(Vec::new())]);
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        assert!(matches!(
            dec(&doc(&[0x6D, 0x03, 0xC3, 0x28, 0x00, 0x01])),
            Err(WbxmlError::InvalidUtf8 {
                offset: 7,
                what: "inline string"
            })
        ));
        assert!(matches!(
            dec(&doc_with_table(&[0xFF, 0x00], &[0x6D, 0x83, 0x00, 0x01])),
            Err(WbxmlError::InvalidUtf8 {
                what: "string table entry",
                ..
            })
        ));
    }

    // ----- tags -----

    #[test]
    fn content_bit_clear_means_empty_element() {
        let e = dec(&doc(&[0x6D, 0x12, 0x52, 0x01, 0x01])).unwrap();
        assert_eq!(
            e,
            Element::syncml("SyncML")
                .child(Element::syncml("Final"))
                .child(Element::syncml("Final"))
        );
    }

    #[test]
    fn table_names_are_borrowed() {
        let e = dec(&doc(MINIMAL_BODY)).unwrap();
        assert!(matches!(e.name, Cow::Borrowed("SyncML")));
        assert!(matches!(
            e.children().next().unwrap().name,
            Cow::Borrowed("Final")
        ));
    }

    #[test]
    fn literal_tags_resolve_through_the_string_table() {
        let table = b"VendorExt\0Flag\0";
        // LITERAL_C VendorExt { LITERAL Flag, LITERAL_AC Flag [attrs] { "x" }, LITERAL_A Flag [attrs] }
        let body = [
            0x6D, 0x44, 0x00, 0x04, 0x0A, 0xC4, 0x0A, 0x05, 0x03, b'v', 0x00, 0x01, 0x03, b'x',
            0x00, 0x01, 0x84, 0x0A, 0x06, 0x01, 0x01, 0x01,
        ];
        let e = dec(&doc_with_table(table, &body)).unwrap();
        let expected = Element::syncml("SyncML").child(
            Element::syncml("VendorExt")
                .child(Element::syncml("Flag"))
                .child(Element::syncml("Flag").text("x"))
                .child(Element::syncml("Flag")),
        );
        assert_eq!(e, expected);
        let ext = e.children().next().unwrap();
        assert!(matches!(ext.name, Cow::Owned(_)));
        // A LITERAL in the MetInf page belongs to MetInf.
        let e = dec(&doc_with_table(
            table,
            &[0x6D, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x01],
        ))
        .unwrap();
        assert_eq!(e.children().next().unwrap().ns, Namespace::MetInf);
        // Errors.
        assert!(matches!(
            dec(&doc_with_table(table, &[0x04, 0x20])),
            Err(WbxmlError::StringTableIndex { index: 0x20, .. })
        ));
        assert!(matches!(
            dec(&doc_with_table(b"\0", &[0x04, 0x00])),
            Err(WbxmlError::EmptyName { offset: 6 })
        ));
        assert!(matches!(
            dec(&doc_with_table(&[0xFF, 0x00], &[0x04, 0x00])),
            Err(WbxmlError::InvalidUtf8 {
                what: "LITERAL name",
                ..
            })
        ));
    }

    #[test]
    fn attributes_are_skipped() {
        let table = b"attr\0";
        // SyncML with attributes: attr-start 0x05, STR_I "v", SWITCH_PAGE 3 (attribute page), value token
        // 0x85, STR_T 0, ENTITY 0x41, OPAQUE 2 bytes, LITERAL 0, EXT_0, EXT_T_1 5, EXT_I_2 "e", END; then
        // content Final, END.
        let body = [
            0xED, 0x05, 0x03, b'v', 0x00, 0x00, 0x03, 0x85, 0x83, 0x00, 0x02, 0x41, 0xC3, 0x02,
            0x01, 0x01, 0x04, 0x00, 0xC0, 0x81, 0x05, 0x42, b'e', 0x00, 0x01, 0x12, 0x01,
        ];
        assert_eq!(dec(&doc_with_table(table, &body)).unwrap(), minimal());
        // Attribute string references are checked too.
        assert!(matches!(
            dec(&doc_with_table(table, &[0xAD, 0x83, 0x09, 0x01])),
            Err(WbxmlError::StringTableIndex { index: 9, .. })
        ));
        assert!(matches!(
            dec(&doc(&[0xAD, 0x05])),
            Err(WbxmlError::Truncated {
                expected: "attribute or END",
                ..
            })
        ));
    }

    #[test]
    fn switch_page_anywhere() {
        // SWITCH_PAGE before the root, and twice in a row inside.
        // <SyncML><Meta><MaxMsgSize>1</MaxMsgSize></Meta><MgmtTree/></SyncML>
        let body = [
            0x00, 0x01, 0x00, 0x00, 0x6D, 0x5A, 0x00, 0x02, 0x00, 0x01, 0x4C, 0x03, b'1', 0x00,
            0x01, 0x01, 0x00, 0x02, 0x20, 0x01,
        ];
        let e = dec(&doc(&body)).unwrap();
        let expected = Element::syncml("SyncML")
            .child(Element::syncml("Meta").child(Element::metinf("MaxMsgSize").text("1")))
            .child(Element::new(Namespace::Ddf, "MgmtTree"));
        assert_eq!(e, expected);
        assert!(matches!(
            dec(&doc(&[0x6D, 0x00, 0x03, 0x05, 0x01])),
            Err(WbxmlError::UnknownCodePage { offset: 6, page: 3 })
        ));
        assert!(matches!(
            dec(&doc(&[0x6D, 0x00])),
            Err(WbxmlError::Truncated {
                expected: "code page",
                ..
            })
        ));
    }

    #[test]
    fn processing_instructions_are_skipped() {
        // PI before the root, in content and after the root.
        let body = [
            0x43, 0x05, 0x03, b'x', 0x00, 0x01, 0x6D, 0x43, 0x06, 0x01, 0x12, 0x01, 0x43, 0x07,
            0x01,
        ];
        assert_eq!(dec(&doc(&body)).unwrap(), minimal());
        assert!(matches!(
            dec(&doc(&[0x6D, 0x12, 0x01, 0x43, 0x07])),
            Err(WbxmlError::Truncated { .. })
        ));
    }

    #[test]
    fn unknown_tokens_name_their_page() {
        // 0x30 is reserved on page 0, 0x3D is past the table.
        for t in [0x30, 0x3D, 0x3F] {
            assert!(matches!(
                dec(&doc(&[0x6D, t, 0x01])),
                Err(WbxmlError::UnknownToken { offset: 6, page: 0, token }) if token == t
            ));
        }
        assert!(matches!(
            dec(&doc(&[0x6D, 0x00, 0x01, 0x57, 0x01, 0x01])),
            Err(WbxmlError::UnknownToken {
                offset: 8,
                page: 1,
                token: 0x57
            })
        ));
        assert!(matches!(
            dec(&doc(&[0x00, 0x02, 0x3D])),
            Err(WbxmlError::UnknownToken {
                page: 2,
                token: 0x3D,
                ..
            })
        ));
    }

    #[test]
    fn structure_errors() {
        assert!(matches!(
            dec(&doc(&[0x01])),
            Err(WbxmlError::UnbalancedEnd { offset: 5 })
        ));
        assert!(matches!(
            dec(&doc(&[0x6D, 0x12, 0x01, 0x12])),
            Err(WbxmlError::ContentAfterRoot {
                offset: 8,
                token: 0x12
            })
        ));
        assert!(matches!(
            dec(&doc(&[0x12, 0x01])),
            Err(WbxmlError::ContentAfterRoot {
                offset: 6,
                token: END
            })
        ));
        assert!(matches!(
            dec(&doc(&[0x12, 0x00, 0x00])),
            Err(WbxmlError::ContentAfterRoot {
                token: SWITCH_PAGE,
                ..
            })
        ));
        assert!(matches!(
            dec(&doc(&[0x03, b'a', 0x00, 0x12])),
            Err(WbxmlError::MisplacedToken {
                offset: 5,
                token: STR_I,
                ..
            })
        ));
        for ext in [0x40, 0x81, 0xC2] {
            assert!(matches!(
                dec(&doc(&[0x6D, ext, 0x01])),
                Err(WbxmlError::Extension { offset: 6, token }) if token == ext
            ));
        }
    }

    // ----- limits -----

    #[test]
    fn limits_are_enforced() {
        let small = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l
        };
        let d = doc(&[
            0x6D, 0x6C, 0x71, 0x03, b'1', b'.', b'2', 0x00, 0x01, 0x01, 0x01,
        ]);
        let l = small(|l| l.max_message_bytes = 10);
        assert!(matches!(
            decode(&d, &l),
            Err(WbxmlError::Limit(LimitError::MessageTooLarge {
                limit: 10,
                ..
            }))
        ));
        let l = small(|l| l.max_depth = 2);
        assert!(matches!(
            decode(&d, &l),
            Err(WbxmlError::Limit(LimitError::TooDeep { ref element, limit: 2 })) if element == "VerDTD"
        ));
        let l = small(|l| l.max_elements = 2);
        assert!(matches!(
            decode(&d, &l),
            Err(WbxmlError::Limit(LimitError::TooManyElements { limit: 2 }))
        ));
        let l = small(|l| l.max_string_bytes = 2);
        assert!(matches!(
            decode(&d, &l),
            Err(WbxmlError::Limit(LimitError::StringTooLong {
                size: 3,
                limit: 2,
                ..
            }))
        ));
        // Merged text counts as one string.
        let d2 = doc(&[0x6D, 0x03, b'a', b'b', 0x00, 0x03, b'c', 0x00, 0x01]);
        assert!(matches!(
            decode(&d2, &l),
            Err(WbxmlError::Limit(LimitError::StringTooLong { size: 3, .. }))
        ));
        // An OPAQUE claiming 4 GiB is refused by its declared length, before anything is allocated.
        let d3 = doc(&[0x6D, 0xC3, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F, 0x00]);
        assert!(matches!(
            dec(&d3),
            Err(WbxmlError::Limit(LimitError::StringTooLong {
                size: 0xFFFF_FFFF,
                ..
            }))
        ));
        let huge = Limits {
            max_string_bytes: usize::MAX,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&d3, &huge),
            Err(WbxmlError::Truncated { .. })
        ));
    }

    #[test]
    fn string_table_amplification_is_bounded() {
        // A 1000-byte table entry referenced 2000 times: 2 MB of text from a 5 kB message.
        let mut table = vec![b'a'; 1000];
        table.push(0);
        let mut body = vec![0x6D];
        for _ in 0..2000 {
            body.extend_from_slice(&[0x4F, 0x83, 0x00, 0x01]);
        }
        body.push(0x01);
        let d = doc_with_table(&table, &body);
        let limits = Limits {
            max_message_bytes: 100_000,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&d, &limits),
            Err(WbxmlError::DecodedTooLarge { limit: 100_000, .. })
        ));
        // References from attributes are only bounds-checked: a 100 kB entry referenced 50 000 times
        // is skipped in linear time.
        let mut table = vec![b'a'; 100_000];
        table.push(0);
        let mut body = vec![0xED];
        for _ in 0..50_000 {
            body.extend_from_slice(&[0x83, 0x00]);
        }
        body.extend_from_slice(&[0x01, 0x01]);
        let started = std::time::Instant::now();
        assert_eq!(
            dec(&doc_with_table(&table, &body)).unwrap(),
            Element::syncml("SyncML")
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // LITERAL names count too.
        let mut table = vec![b'N'; 1000];
        table.push(0);
        let mut body = vec![0x6D];
        for _ in 0..2000 {
            body.extend_from_slice(&[0x04, 0x00]);
        }
        body.push(0x01);
        assert!(matches!(
            decode(&doc_with_table(&table, &body), &limits),
            Err(WbxmlError::DecodedTooLarge { .. })
        ));
    }

    // ----- encoding -----

    fn package1() -> Element {
        let mut hdr = Element::syncml("SyncHdr");
        hdr.push_leaf("VerDTD", "1.2");
        hdr.push_leaf("VerProto", "DM/1.2");
        hdr.push_leaf("SessionID", "1");
        hdr.push_leaf("MsgID", "1");
        hdr.push(
            Element::syncml("Target")
                .child(Element::syncml("LocURI").text("http://dm.example.com")),
        );
        hdr.push(Element::syncml("Meta").child(Element::metinf("MaxMsgSize").text("20000")));
        let body = Element::syncml("SyncBody")
            .child(
                Element::syncml("Alert")
                    .child(Element::syncml("CmdID").text("1"))
                    .child(Element::syncml("Data").text("1201")),
            )
            .child(Element::syncml("Final"));
        Element::syncml("SyncML").child(hdr).child(body)
    }

    fn mgmt_tree() -> Element {
        let mut node = Element::new(Namespace::Ddf, "Node");
        node.push_leaf("NodeName", "AppID");
        node.push(Element::new(Namespace::Ddf, "RTProperties").child(
            Element::new(Namespace::Ddf, "Format").child(Element::new(Namespace::Ddf, "chr")),
        ));
        node.push_leaf("Value", "w7");
        let mut tree = Element::new(Namespace::Ddf, "MgmtTree");
        tree.push_leaf("VerDTD", "1.2");
        tree.push(node);
        tree
    }

    #[test]
    fn encodes_syncml_header() {
        let b = encode(&minimal()).unwrap();
        assert_eq!(b, [0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0x12, 0x01]);
    }

    #[test]
    fn encodes_ddf_public_id_through_string_table() {
        let b = encode(&mgmt_tree()).unwrap();
        let mut expected = vec![0x02, 0x00, 0x00, 0x6A, 0x1B];
        expected.extend_from_slice(b"-//OMA//DTD-DM-DDF 1.2//EN\0");
        expected.extend_from_slice(&[0x00, 0x02, 0x60]);
        assert_eq!(&b[..expected.len()], &expected[..]);
        assert_eq!(dec(&b).unwrap(), mgmt_tree());
        assert!(looks_like_wbxml(&b));
    }

    #[test]
    fn encodes_metinf_root_with_its_public_id() {
        let b = encode(&Element::metinf("MetInf")).unwrap();
        assert_eq!(b, [0x02, 0xA4, 0x02, 0x6A, 0x00, 0x00, 0x01, 0x0E]);
        assert_eq!(dec(&b).unwrap(), Element::metinf("MetInf"));
    }

    #[test]
    fn switches_pages_only_when_needed() {
        let e = Element::syncml("SyncML")
            .child(
                Element::syncml("Meta")
                    .child(Element::metinf("MaxMsgSize").text("1"))
                    .child(Element::metinf("Type").text("t")),
            )
            .child(Element::syncml("Final"));
        let b = encode(&e).unwrap();
        // Meta, SWITCH_PAGE 1, MaxMsgSize "1" END, Type "t" END, END (Meta), SWITCH_PAGE 0, Final, END.
        assert_eq!(
            &b[5..],
            &[
                0x6D, 0x5A, 0x00, 0x01, 0x4C, 0x03, b'1', 0x00, 0x01, 0x53, 0x03, b't', 0x00, 0x01,
                0x01, 0x00, 0x00, 0x12, 0x01
            ]
        );
        assert_eq!(dec(&b).unwrap(), e);
        assert_eq!(dec(&encode(&package1()).unwrap()).unwrap(), package1());
    }

    #[test]
    fn name_from_another_page_is_encoded_from_that_page() {
        // MaxMsgSize wrongly put in the SyncML namespace: written from page 1, read back as MetInf.
        let e = Element::syncml("SyncML").child(Element::syncml("MaxMsgSize").text("1"));
        let back = dec(&encode(&e).unwrap()).unwrap();
        assert_eq!(back.children().next().unwrap().ns, Namespace::MetInf);
        assert_eq!(back.children().next().unwrap().name, "MaxMsgSize");
    }

    #[test]
    fn unknown_names_become_literals_with_shared_table_entries() {
        let e = Element::syncml("SyncML")
            .child(Element::syncml("Vendor").text("a"))
            .child(Element::syncml("Vendor"))
            .child(Element::metinf("Ext"));
        let b = encode(&e).unwrap();
        assert_eq!(&b[..5], &[0x02, 0xA4, 0x01, 0x6A, 0x0B]);
        assert_eq!(&b[5..16], b"Vendor\0Ext\0");
        assert_eq!(
            &b[16..],
            &[
                0x6D, 0x44, 0x00, 0x03, b'a', 0x00, 0x01, 0x04, 0x00, 0x00, 0x01, 0x04, 0x07, 0x01
            ]
        );
        assert_eq!(dec(&b).unwrap(), e);
    }

    #[test]
    fn opaque_and_nested_documents() {
        let nested = encode(&mgmt_tree()).unwrap();
        let mut data = Element::syncml("Data");
        data.content.push(Node::Opaque(nested.clone()));
        let e = Element::syncml("SyncML").child(data);
        let back = dec(&encode(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        match &back.find("Data").unwrap().content[..] {
            [Node::Opaque(bytes)] => {
                assert!(looks_like_wbxml(bytes));
                assert_eq!(dec(bytes).unwrap(), mgmt_tree());
            }
            other => panic!("{other:?}"),
        }
        // Inline DDF inside a SyncML document uses code page 2.
        let inline = Element::syncml("SyncML").child(Element::syncml("Data").child(mgmt_tree()));
        let b = encode(&inline).unwrap();
        assert!(b.windows(3).any(|w| w == [0x00, 0x02, 0x60]));
        assert_eq!(dec(&b).unwrap(), inline);
    }

    #[test]
    fn adjacent_text_is_one_string() {
        let mut data = Element::syncml("Data");
        for t in ["a", "", "&", "b"] {
            data.content.push(Node::Text(t.into()));
        }
        data.content.push(Node::Opaque(vec![1]));
        data.content.push(Node::Text("c".into()));
        let b = encode(&data).unwrap();
        assert_eq!(
            &b[5..],
            &[
                0x4F, 0x03, b'a', b'&', b'b', 0x00, 0xC3, 0x01, 0x01, 0x03, b'c', 0x00, 0x01
            ]
        );
    }

    #[test]
    fn empty_text_is_not_content() {
        let e = Element::syncml("SyncML").text("");
        assert_eq!(encode(&e).unwrap(), [0x02, 0xA4, 0x01, 0x6A, 0x00, 0x2D]);
    }

    #[test]
    fn encode_errors() {
        let e = Element::syncml("SyncML").text("a\0b");
        assert!(
            matches!(encode(&e), Err(WbxmlError::NulInText { ref element }) if element == "SyncML")
        );
        let e = Element::syncml("SyncML").child(Element::syncml(""));
        assert!(matches!(encode(&e), Err(WbxmlError::InvalidName { .. })));
        let e = Element::syncml("SyncML").child(Element::syncml("a\0"));
        assert!(matches!(encode(&e), Err(WbxmlError::InvalidName { .. })));
    }

    #[test]
    fn looks_like_wbxml_recognises_headers() {
        assert!(looks_like_wbxml(&encode(&package1()).unwrap()));
        assert!(looks_like_wbxml(&[0x01, 0x9F, 0x53, 0x6A, 0x00])); // SyncML 1.1, WBXML 1.1
        assert!(!looks_like_wbxml(b"<SyncML/>"));
        assert!(!looks_like_wbxml(&[]));
        assert!(!looks_like_wbxml(&[0x03, 0xA4]));
        assert!(!looks_like_wbxml(&[0x03, 0x01, 0x6A, 0x00])); // unknown public ID
        assert!(!looks_like_wbxml(&[0x03, 0xA4, 0x02, 0x6A, 0x00])); // MetInf
        assert!(!looks_like_wbxml(&[0x00, 0xA4, 0x01, 0x6A, 0x00])); // WBXML 1.0
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = dec(&doc(&[0x6D, 0x30, 0x01])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown tag token 0x30 on code page 0 at byte 6"
        );
        let mut d = doc(MINIMAL_BODY);
        d[1] = 0x89;
        d[2] = 0x03; // 0x0483, no name
        let msg = dec(&d).unwrap_err().to_string();
        assert_eq!(msg, "unsupported public ID 0x0483 at byte 1");
    }

    // ----- properties -----

    /// Element names drawn from the three code pages plus a few unknown ones.
    fn arb_name(ns: Namespace) -> impl Strategy<Value = Cow<'static, str>> {
        let known: Vec<&'static str> = tags_of(ns).iter().map(|(_, n)| *n).collect();
        prop_oneof![
            4 => proptest::sample::select(known).prop_map(Cow::Borrowed),
            1 => proptest::sample::select(vec!["VendorExt", "x-Acme", "Ünïcøde", "Data2"])
                .prop_map(Cow::Borrowed),
        ]
    }

    fn arb_ns() -> impl Strategy<Value = Namespace> {
        prop_oneof![
            Just(Namespace::SyncMl),
            Just(Namespace::MetInf),
            Just(Namespace::Ddf)
        ]
    }

    fn arb_leaf_node() -> impl Strategy<Value = Node> {
        prop_oneof![
            "[^\\x00]{1,20}".prop_map(Node::Text),
            "[ a-zA-Zé€😀<>&]{1,8}".prop_map(Node::Text),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Node::Opaque),
        ]
    }

    fn arb_element() -> impl Strategy<Value = Element> {
        let leaf = (arb_ns(), proptest::collection::vec(arb_leaf_node(), 0..2))
            .prop_flat_map(|(ns, content)| (Just(ns), arb_name(ns), Just(content)))
            .prop_map(|(ns, name, content)| Element { ns, name, content });
        leaf.prop_recursive(5, 64, 6, |inner| {
            (
                arb_ns(),
                proptest::collection::vec(
                    prop_oneof![3 => inner.prop_map(Node::Element), 1 => arb_leaf_node()],
                    0..6,
                ),
            )
                .prop_flat_map(|(ns, content)| (Just(ns), arb_name(ns), Just(content)))
                .prop_map(|(ns, name, content)| Element { ns, name, content })
        })
    }

    /// Merge adjacent text nodes, as the decoder does.
    fn normalise(e: &mut Element) {
        let mut out: Vec<Node> = Vec::new();
        for n in e.content.drain(..) {
            match (out.last_mut(), n) {
                (Some(Node::Text(prev)), Node::Text(t)) => prev.push_str(&t),
                (_, Node::Element(mut c)) => {
                    normalise(&mut c);
                    out.push(Node::Element(c));
                }
                (_, other) => out.push(other),
            }
        }
        e.content = out;
    }

    /// A message that decodes successfully, for mutation.
    fn valid_message() -> Vec<u8> {
        let mut p = package1();
        let mut data = Element::syncml("Data");
        data.content
            .push(Node::Opaque(encode(&mgmt_tree()).unwrap()));
        p.push(
            Element::syncml("Item")
                .child(data)
                .child(Element::syncml("Vendor").text("v")),
        );
        encode(&p).unwrap()
    }

    proptest! {
        #[test]
        fn round_trip(e in arb_element()) {
            let mut expected = e.clone();
            normalise(&mut expected);
            let bytes = encode(&e).unwrap();
            let limits = Limits { max_depth: 64, ..Limits::default() };
            prop_assert_eq!(decode(&bytes, &limits).unwrap(), expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let limits = Limits { max_message_bytes: 4096, max_depth: 8, max_elements: 64, max_string_bytes: 64 };
            if let Ok(e) = decode(&bytes, &limits) {
                prop_assert!(e.count_elements() <= 64);
            }
            let _ = looks_like_wbxml(&bytes);
        }

        #[test]
        fn header_prefixed_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let limits = Limits { max_message_bytes: 4096, max_depth: 8, max_elements: 64, max_string_bytes: 64 };
            if let Ok(e) = decode(&doc(&body), &limits) {
                prop_assert!(e.count_elements() <= 64);
            }
        }

        #[test]
        fn mutated_messages_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8)
        ) {
            let mut bytes = valid_message();
            for (at, value, kind) in edits {
                if bytes.is_empty() { break; }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = value,
                    1 => { bytes.remove(i); }
                    _ => bytes.insert(i, value),
                }
            }
            let limits = Limits { max_message_bytes: 4096, max_depth: 8, max_elements: 64, max_string_bytes: 256 };
            if let Ok(e) = decode(&bytes, &limits) {
                prop_assert!(e.count_elements() <= 64);
            }
        }
    }
}

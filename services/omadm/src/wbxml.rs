//! wbxml (in progress).
use crate::element::{Element, LimitError, Limits};
#[derive(Debug, thiserror::Error)]
pub enum WbxmlError {
    #[error("{0}")]
    Limit(#[from] LimitError),
}
pub fn decode(_i: &[u8], _l: &Limits) -> Result<Element, WbxmlError> {
    Err(WbxmlError::Limit(LimitError::TooManyElements { limit: 0 }))
}
pub fn encode(_r: &Element) -> Result<Vec<u8>, WbxmlError> {
    Ok(Vec::new())
}
pub fn looks_like_wbxml(_b: &[u8]) -> bool {
    false
}

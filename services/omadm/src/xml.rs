//! xml (in progress).
use crate::element::{Element, LimitError, Limits};
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("{0}")]
    Limit(#[from] LimitError),
}
pub fn decode(_i: &[u8], _l: &Limits) -> Result<Element, XmlError> {
    Err(XmlError::Limit(LimitError::TooManyElements { limit: 0 }))
}
pub fn encode(_r: &Element) -> Vec<u8> {
    Vec::new()
}

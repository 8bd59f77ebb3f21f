//! PLACEHOLDER (being written)
use super::{rules::Ctx, AnalyzeError, Finding};
use serde::Serialize;
use tokio_postgres::Client;
#[derive(Debug, Clone, Serialize, Default)]
pub struct Skew {}
impl Skew {
    pub fn findings(&self) -> Vec<Finding> {
        Vec::new()
    }
    pub fn text(&self) -> String {
        String::new()
    }
}
pub async fn measure(_ctx: &Ctx<'_>, _client: &Client) -> Result<Skew, AnalyzeError> {
    Ok(Skew::default())
}

//! PLACEHOLDER (being written)
use super::{rules::Ctx, AnalyzeError, Finding};
use serde::Serialize;
use tokio_postgres::Client;
#[derive(Debug, Clone, Serialize, Default)]
pub struct DataReport {}
impl DataReport {
    pub fn findings(&self) -> Vec<Finding> {
        Vec::new()
    }
}
pub async fn check(
    _ctx: &Ctx<'_>,
    _client: &Client,
    _full: bool,
) -> Result<DataReport, AnalyzeError> {
    Ok(DataReport::default())
}

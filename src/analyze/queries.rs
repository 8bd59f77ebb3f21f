//! PLACEHOLDER (being written)
use super::{rules::Ctx, AnalyzeError, Finding};
use tokio_postgres::Client;
pub async fn audit(_ctx: &Ctx<'_>, _client: &Client) -> Result<Vec<Finding>, AnalyzeError> {
    Ok(Vec::new())
}

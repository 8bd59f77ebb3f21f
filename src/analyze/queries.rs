//! PLACEHOLDER (being written)
use tokio_postgres::Client;
use super::{rules::Ctx, AnalyzeError, Finding};
pub async fn audit(_ctx: &Ctx<'_>, _client: &Client) -> Result<Vec<Finding>, AnalyzeError> { Ok(Vec::new()) }

//! MongoDB change streams listener.

use crate::source::{SourceContext, SourceError};

pub async fn run(_ctx: &mut SourceContext) -> Result<(), SourceError> {
    Err(SourceError::permanent(
        "MongoDB change streams are not available in this build",
    ))
}

/// The collections of every database, as `db.collection`.
pub async fn list_collections(
    _url: &crate::secret::DatabaseUrl,
) -> Result<Vec<String>, SourceError> {
    Err(SourceError::permanent(
        "MongoDB change streams are not available in this build",
    ))
}

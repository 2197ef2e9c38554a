//! PostgreSQL logical replication listener (slot + pgoutput).

use crate::source::{SourceContext, SourceError};

pub async fn run(_ctx: &mut SourceContext) -> Result<(), SourceError> {
    Err(SourceError::permanent(
        "logical replication is not available in this build",
    ))
}

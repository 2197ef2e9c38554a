//! MongoDB change streams listener.

use crate::source::{SourceContext, SourceError};

pub async fn run(_ctx: &mut SourceContext) -> Result<(), SourceError> {
    Err(SourceError::permanent(
        "MongoDB change streams are not available in this build",
    ))
}

//! Tool arguments, read so that an error names the argument at fault.
//!
//! rmcp's own `Parameters<T>` reports a type error as "invalid type: integer `42`, expected a
//! string" without saying which argument; a model cannot fix what it cannot find. This
//! wrapper deserializes through `serde_path_to_error`, so the message starts with the path
//! (`title`, `tags[2]`). It is named `Parameters` on purpose: rmcp's `#[tool]` macro finds a
//! tool's input schema by looking for an argument of a type with that name.

use rmcp::{
    ErrorData,
    handler::server::{common::FromContextPart, tool::ToolCallContext},
    schemars::{self, JsonSchema},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The arguments of a tool call, as `T`.
#[derive(Debug)]
pub struct Parameters<T>(pub T);

impl<T: JsonSchema> JsonSchema for Parameters<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<S, T: DeserializeOwned> FromContextPart<ToolCallContext<'_, S>> for Parameters<T> {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        let arguments = Value::Object(context.arguments.take().unwrap_or_default());
        // rmcp turns an invalid-params error with the prefix "failed to deserialize
        // parameters:" into a tool result with `isError: true`, which is how MCP wants
        // argument errors reported: the model reads them and retries.
        serde_path_to_error::deserialize(arguments)
            .map(Parameters)
            .map_err(|err| {
                let message = match err.path().to_string().as_str() {
                    "." => format!("failed to deserialize parameters: {}", err.inner()),
                    path => format!(
                        "failed to deserialize parameters: argument {path}: {}",
                        err.inner()
                    ),
                };
                ErrorData::invalid_params(message, None)
            })
    }
}

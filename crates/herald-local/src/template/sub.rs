//! `Fn::Sub`, read once: its two argument forms and its `${...}` placeholders, shared by the
//! resolver, the reference walk and the inlining of nested applications.

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

/// An `Fn::Sub` argument: the text and its own variables (empty for the plain string form).
pub(super) struct Sub {
    pub text: String,
    pub variables: Map<String, Value>,
}

/// One piece of the text: literal text, a `${Name}` placeholder, or `${!Literal}` (which reads
/// as `${Literal}`).
#[derive(Debug, PartialEq)]
pub(super) enum Piece<'a> {
    Text(&'a str),
    Name(&'a str),
    Escaped(&'a str),
}

impl Sub {
    /// `"text"` or `["text", {variables}]`; anything else is an error, as in CloudFormation.
    pub fn parse(arg: &Value) -> Result<Self> {
        let malformed = || anyhow!("Fn::Sub takes a string or [string, variables]");
        match arg {
            Value::String(text) => Ok(Self {
                text: text.clone(),
                variables: Map::new(),
            }),
            Value::Array(parts) => Ok(Self {
                text: parts
                    .first()
                    .and_then(Value::as_str)
                    .ok_or_else(malformed)?
                    .to_string(),
                variables: match parts.get(1) {
                    None => Map::new(),
                    Some(Value::Object(variables)) => variables.clone(),
                    Some(_) => bail!("Fn::Sub's second argument is a map of variables"),
                },
            }),
            _ => Err(malformed()),
        }
    }

    /// Back to the argument: the plain string form when there are no variables.
    pub fn into_value(self) -> Value {
        if self.variables.is_empty() {
            Value::String(self.text)
        } else {
            Value::Array(vec![
                Value::String(self.text),
                Value::Object(self.variables),
            ])
        }
    }

    /// The text in pieces, in order.
    pub fn pieces(&self) -> Result<Vec<Piece<'_>>> {
        pieces(&self.text)
    }

    /// The names the text's placeholders refer to (escaped `${!...}` excluded).
    pub fn names(&self) -> Vec<&str> {
        pieces(&self.text)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|piece| match piece {
                Piece::Name(name) => Some(name),
                _ => None,
            })
            .collect()
    }
}

fn pieces(text: &str) -> Result<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow!("Fn::Sub: unclosed ${{ in {text}"))?;
        let name = &after[..end];
        out.push(match name.strip_prefix('!') {
            Some(literal) => Piece::Escaped(literal),
            None => Piece::Name(name),
        });
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_forms_and_every_kind_of_piece() {
        let sub =
            Sub::parse(&json!(["arn:${AWS::Region}:${Q.Arn}/${!x}-${Own}", {"Own": 1}])).unwrap();
        assert_eq!(
            sub.pieces().unwrap(),
            vec![
                Piece::Text("arn:"),
                Piece::Name("AWS::Region"),
                Piece::Text(":"),
                Piece::Name("Q.Arn"),
                Piece::Text("/"),
                Piece::Escaped("x"),
                Piece::Text("-"),
                Piece::Name("Own"),
            ]
        );
        assert_eq!(sub.names(), vec!["AWS::Region", "Q.Arn", "Own"]);
        assert_eq!(sub.variables["Own"], json!(1));
        assert_eq!(
            Sub::parse(&json!("plain")).unwrap().into_value(),
            json!("plain")
        );
    }

    #[test]
    fn malformed_arguments_are_named() {
        assert!(Sub::parse(&json!(3)).is_err());
        assert!(Sub::parse(&json!(["a", "b"])).is_err());
        let unclosed = Sub::parse(&json!("a${b")).unwrap();
        assert!(unclosed
            .pieces()
            .unwrap_err()
            .to_string()
            .contains("unclosed"));
    }
}

//! The typed form of a query: what the checker produces from the text a caller sent, and what
//! every engine compiles to its own SQL dialect. Nothing in here is a string of SQL; columns
//! come only from the collection's schema, and values are typed for the column they meet.

use crate::ids::FieldName;
use crate::record::FieldValue;
use crate::schema::{Collection, FieldType};

/// Fields every record has, whatever its collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemField {
    Id,
    CreatedAt,
    UpdatedAt,
    Version,
}

impl SystemField {
    pub const ALL: [SystemField; 4] = [
        SystemField::Id,
        SystemField::CreatedAt,
        SystemField::UpdatedAt,
        SystemField::Version,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SystemField::Id => "id",
            SystemField::CreatedAt => "created_at",
            SystemField::UpdatedAt => "updated_at",
            SystemField::Version => "version",
        }
    }

    pub fn field_type(self) -> FieldType {
        match self {
            SystemField::Id => FieldType::String,
            SystemField::CreatedAt | SystemField::UpdatedAt => FieldType::Timestamp,
            SystemField::Version => FieldType::Integer,
        }
    }

    pub fn parse(name: &str) -> Option<SystemField> {
        SystemField::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A column of the collection's table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Column {
    System(SystemField),
    Field {
        name: FieldName,
        field_type: FieldType,
        /// Whether every stored record has a value (required fields): lets the compiler use
        /// plain comparisons where `NULL` would otherwise need care.
        not_null: bool,
    },
}

impl Column {
    /// The column `name` refers to in `collection`: a system field or a schema field.
    /// (`tenant_id` is never a column a query can name.)
    pub fn resolve(name: &str, collection: &Collection) -> Option<Column> {
        if let Some(system) = SystemField::parse(name) {
            return Some(Column::System(system));
        }
        collection
            .fields
            .iter()
            .find(|(field, _)| field.as_str() == name)
            .map(|(field, spec)| Column::Field {
                name: field.clone(),
                field_type: spec.field_type,
                not_null: spec.required,
            })
    }

    pub fn field_type(&self) -> FieldType {
        match self {
            Column::System(s) => s.field_type(),
            Column::Field { field_type, .. } => *field_type,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Column::System(s) => s.name(),
            Column::Field { name, .. } => name.as_str(),
        }
    }

    pub fn not_null(&self) -> bool {
        match self {
            Column::System(_) => true,
            Column::Field { not_null, .. } => *not_null,
        }
    }
}

/// One step into a `json` field: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// Keys are `[A-Za-z0-9_]+` (the parser refuses anything else).
    Key(String),
    Index(u32),
}

/// What a predicate reads: a column, or a value inside a `json` column.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Column(Column),
    JsonPath {
        field: FieldName,
        path: Vec<PathStep>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
}

/// A checked filter. Semantics every engine implements identically:
///
/// - A comparison with a missing (null) value is false, except `Ne`, which is true when the
///   value is missing (a missing value is "not equal" to anything).
/// - `Not` is two-valued: `Not(p)` holds exactly when `p` does not.
/// - On a `JsonPath`, a comparison holds only when the JSON value there has the literal's
///   kind (number, string, boolean): `meta.n > 5` is false for `{"n": "7"}`.
/// - Values are typed for their operand: `Timestamp` for timestamp columns, `Integer` or
///   `Float` for numeric ones, and so on.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    Compare {
        operand: Operand,
        op: CmpOp,
        value: FieldValue,
    },
    /// `operand in [values]`; `values` is never empty.
    In {
        operand: Operand,
        values: Vec<FieldValue>,
    },
    /// The operand has a value (not missing, not JSON null).
    Exists(Operand),
    /// String prefix, case-sensitive.
    StartsWith {
        operand: Operand,
        prefix: String,
    },
    /// Substring of a `string`/`text` column (or a JSON string), case-sensitive.
    ContainsText {
        operand: Operand,
        needle: String,
    },
    /// The JSON array at the operand has an element equal to `value`.
    ContainsElement {
        operand: Operand,
        value: FieldValue,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub column: Column,
    pub descending: bool,
}

/// A full-text query: every term must match (AND).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    pub terms: Vec<SearchTerm>,
}

/// Terms hold normalised tokens, as [`super::search::tokenize`] produces them.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchTerm {
    Word(String),
    /// Matches every token that starts with this one.
    Prefix(String),
    /// Consecutive tokens, in order.
    Phrase(Vec<String>),
}

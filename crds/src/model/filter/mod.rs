//! A subscription's `filtersConfiguration`, checked and compiled once, then matched against
//! every event published to the topic.
//!
//! The rules follow Azure Event Grid's "Event filters for subscriptions to Azure Event Grid
//! namespace topics" (learn.microsoft.com/azure/event-grid/namespace-event-filtering) and
//! its limits; the doc is quoted where a choice rests on it.
//!
//! Compilation does all the per-subscription work: operator names become variants, filter
//! strings are lower-cased, numbers parsed, keys split into path segments. Matching an event
//! then walks the event's JSON by reference and compares without allocating.

use crate::model::error::FieldProblem;
use crate::types::filters::{AdvancedFilter, FiltersConfiguration, OperatorType};
use serde_json::{Map, Number, Value};
use std::fmt::{self, Write as _};

/// At most this many advanced filters per subscription.
/// Doc: "25 advanced filters and 25 filter values across all the filters per Event Grid
/// subscription".
pub const MAX_ADVANCED_FILTERS: usize = 25;

/// At most this many filter values across all advanced filters of a subscription (a `value`
/// counts as one, a `values` entry — a `[min, max]` pair included — as one each).
pub const MAX_FILTER_VALUES: usize = 25;

/// At most this many characters in one string filter value. Doc: "512 characters per string
/// value".
pub const MAX_STRING_VALUE_CHARS: usize = 512;

/// A `filtersConfiguration` ready to match events.
#[derive(Clone, Debug)]
pub struct CompiledFilter {
    /// Lower-cased event types; `None` when every type is accepted.
    event_types: Option<Vec<Folded>>,
    /// Advanced filters, all of which must match.
    filters: Vec<CompiledAdvancedFilter>,
    /// `enableAdvancedFilteringOnArrays`.
    arrays: bool,
}

impl CompiledFilter {
    /// Checks `config` and compiles it. On failure returns every problem found, each naming
    /// its field relative to `filtersConfiguration` (e.g. `filters[2].values`).
    pub fn compile(config: &FiltersConfiguration) -> Result<CompiledFilter, Vec<FieldProblem>> {
        let mut problems = Vec::new();

        for (index, event_type) in config.included_event_types.iter().enumerate() {
            if event_type.trim().is_empty() {
                problems.push(FieldProblem::new(
                    format!("includedEventTypes[{index}]"),
                    "event type must not be empty",
                ));
            }
        }
        // Doc: "Provide an array with the event types, or specify `All` to get all event
        // types for the event source." An empty list means the same.
        let accepts_all_types = config.included_event_types.is_empty()
            || config
                .included_event_types
                .iter()
                .any(|event_type| event_type.eq_ignore_ascii_case("All"));
        let event_types = (!accepts_all_types).then(|| {
            config
                .included_event_types
                .iter()
                .map(|event_type| Folded::new(event_type))
                .collect()
        });

        if config.filters.len() > MAX_ADVANCED_FILTERS {
            problems.push(FieldProblem::new(
                "filters",
                format!(
                    "{} advanced filters; at most {MAX_ADVANCED_FILTERS} are allowed",
                    config.filters.len()
                ),
            ));
        }
        let total_values: usize = config.filters.iter().map(value_count).sum();
        if total_values > MAX_FILTER_VALUES {
            problems.push(FieldProblem::new(
                "filters",
                format!(
                    "{total_values} filter values across all filters; at most {MAX_FILTER_VALUES} are allowed"
                ),
            ));
        }

        let mut filters = Vec::with_capacity(config.filters.len());
        for (index, filter) in config.filters.iter().enumerate() {
            match CompiledAdvancedFilter::compile(filter) {
                Ok(compiled) => filters.push(compiled),
                Err(found) => {
                    let parent = format!("filters[{index}]");
                    problems.extend(found.into_iter().map(|problem| problem.under(&parent)));
                }
            }
        }

        if problems.is_empty() {
            Ok(CompiledFilter {
                event_types,
                filters,
                arrays: config.enable_advanced_filtering_on_arrays,
            })
        } else {
            Err(problems)
        }
    }

    /// A filter that matches every event, as an absent `filtersConfiguration` does.
    pub fn accept_all() -> CompiledFilter {
        CompiledFilter {
            event_types: None,
            filters: Vec::new(),
            arrays: false,
        }
    }

    /// Whether the subscription receives `event`.
    ///
    /// `event` is a CloudEvent in JSON structured form (attributes at top level, `data` a JSON
    /// value, or `data_base64`).
    pub fn matches(&self, event: &Value) -> bool {
        if let Some(event_types) = &self.event_types {
            let Some(event_type) = event.get("type").and_then(Value::as_str) else {
                return false;
            };
            if !event_types
                .iter()
                .any(|wanted| string_equals(event_type, wanted))
            {
                return false;
            }
        }
        self.filters
            .iter()
            .all(|filter| filter.matches(event, self.arrays))
    }
}

/// Values a filter counts against [`MAX_FILTER_VALUES`].
fn value_count(filter: &AdvancedFilter) -> usize {
    usize::from(filter.value.is_some()) + filter.values.as_ref().map_or(0, Vec::len)
}

/// One compiled advanced filter.
#[derive(Clone, Debug)]
struct CompiledAdvancedFilter {
    key: KeyPath,
    test: Test,
}

/// What an advanced filter checks. The Not operators are their positive twin with `negate`
/// set: the doc's pseudo code for each of them is the twin's with MATCH turned into
/// FAIL_MATCH.
#[derive(Clone, Debug)]
enum Test {
    /// NumberIn / NumberNotIn.
    NumberIn { values: Vec<f64>, negate: bool },
    /// NumberLessThan, NumberGreaterThan, NumberLessThanOrEquals, NumberGreaterThanOrEquals.
    NumberCompare { comparison: Comparison, bound: f64 },
    /// NumberInRange / NumberNotInRange, inclusive bounds (doc: `IF key >= a AND key <= b`).
    NumberInRange {
        ranges: Vec<(f64, f64)>,
        negate: bool,
    },
    /// BoolEquals.
    BoolEquals(bool),
    /// The String operators.
    String {
        operation: StringOperation,
        values: Vec<Folded>,
        negate: bool,
    },
    /// IsNullOrUndefined.
    IsNullOrUndefined,
    /// IsNotNull.
    IsNotNull,
}

#[derive(Clone, Copy, Debug)]
enum Comparison {
    LessThan,
    GreaterThan,
    LessThanOrEquals,
    GreaterThanOrEquals,
}

impl Comparison {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Comparison::LessThan => value < bound,
            Comparison::GreaterThan => value > bound,
            Comparison::LessThanOrEquals => value <= bound,
            Comparison::GreaterThanOrEquals => value >= bound,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum StringOperation {
    In,
    BeginsWith,
    EndsWith,
    Contains,
}

impl StringOperation {
    fn holds(self, text: &str, wanted: &Folded) -> bool {
        match self {
            StringOperation::In => string_equals(text, wanted),
            StringOperation::BeginsWith => string_begins_with(text, wanted),
            StringOperation::EndsWith => string_ends_with(text, wanted),
            StringOperation::Contains => string_contains(text, wanted),
        }
    }
}

/// The operands an operator takes, which decides how `value` / `values` are checked.
#[derive(Clone, Copy)]
enum Operands {
    Numbers,
    Number,
    Ranges,
    Bool,
    Strings,
    Nothing,
}

impl CompiledAdvancedFilter {
    fn compile(filter: &AdvancedFilter) -> Result<Self, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let key = KeyPath::compile(&filter.key, &mut problems);
        let test = compile_test(filter, &mut problems);
        match (key, test) {
            (Some(key), Some(test)) if problems.is_empty() => Ok(Self { key, test }),
            _ => Err(problems),
        }
    }

    fn matches(&self, event: &Value, arrays: bool) -> bool {
        let found = self.key.resolve(event);
        // Doc: "The IsNullOrUndefined operator evaluates to true if the key's value is NULL
        // or undefined." A JSON null is therefore treated as an absent key throughout.
        let present = match found {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        };
        match (&self.test, present) {
            (Test::IsNullOrUndefined, present) => present.is_none(),
            (Test::IsNotNull, present) => present.is_some(),
            (test, None) => test.matches_missing_key(),
            // Doc: "You need to set the `enableAdvancedFilteringOnArrays` property to true to
            // use this feature"; the Event Grid on IoT Edge doc spells out the other case: "If
            // an incoming event has an array value for the advanced filter's key, the matching
            // operation fails." So with the flag off an array fails every value operator,
            // the Not operators included.
            (test, Some(Value::Array(items))) => {
                arrays && (items.iter().any(|item| test.positive(item)) != test.negated())
            }
            // Doc: "Event Grid doesn't support filtering on an array of objects. It only
            // allows String, Boolean, Numbers, and Array of the same types." An object is no
            // value any operator can compare, so the filter fails, Not operators included.
            (_, Some(Value::Object(_))) => false,
            (test, Some(scalar)) => test.positive(scalar) != test.negated(),
        }
    }
}

impl Test {
    fn negated(&self) -> bool {
        match self {
            Test::NumberIn { negate, .. }
            | Test::NumberInRange { negate, .. }
            | Test::String { negate, .. } => *negate,
            _ => false,
        }
    }

    /// The result when the key is absent or null.
    ///
    /// Doc: "If the event JSON doesn't contain the advanced filter key, filter is evaluated
    /// as **not matched** for the following operators: NumberGreaterThan,
    /// NumberGreaterThanOrEquals, NumberLessThan, NumberLessThanOrEquals, NumberIn,
    /// BoolEquals, StringContains, StringNotContains, StringBeginsWith, StringNotBeginsWith,
    /// StringEndsWith, StringNotEndsWith, StringIn. The filter is evaluated as **matched** for
    /// the following operators: NumberNotIn, StringNotIn."
    ///
    /// The doc names neither NumberInRange nor NumberNotInRange. They are taken to behave as
    /// their set-membership siblings NumberIn (not matched) and NumberNotIn (matched): "not
    /// in any of the ranges" holds for a value that is not there.
    fn matches_missing_key(&self) -> bool {
        match self {
            Test::NumberIn { negate, .. } | Test::NumberInRange { negate, .. } => *negate,
            Test::String {
                operation: StringOperation::In,
                negate,
                ..
            } => *negate,
            _ => false,
        }
    }

    /// Whether the positive operator holds for one value (a scalar, or one array element).
    ///
    /// Doc, for every operator on arrays: "Any key values with data types that don't match the
    /// filter's data type are ignored." A value of another type makes the positive operator
    /// false, so its Not twin true. Coercions, for values of a type the doc does not rule on:
    /// number operators read a string that parses as a finite number; BoolEquals reads the
    /// strings `true` / `false` (CloudEvents binary mode carries every extension as a string);
    /// string operators read numbers and booleans as their JSON text, which the doc's own
    /// example relies on (`StringBeginsWith` with values `"5"`, `"1"` on the extension
    /// `"comexampleothervalue" : 5`).
    fn positive(&self, value: &Value) -> bool {
        match self {
            Test::NumberIn { values, .. } => {
                number_of(value).is_some_and(|number| values.contains(&number))
            }
            Test::NumberCompare { comparison, bound } => {
                number_of(value).is_some_and(|number| comparison.holds(number, *bound))
            }
            Test::NumberInRange { ranges, .. } => number_of(value).is_some_and(|number| {
                ranges
                    .iter()
                    .any(|&(min, max)| min <= number && number <= max)
            }),
            Test::BoolEquals(wanted) => bool_of(value) == Some(*wanted),
            Test::String {
                operation, values, ..
            } => with_text(value, |text| {
                values.iter().any(|wanted| operation.holds(text, wanted))
            }),
            Test::IsNullOrUndefined => value.is_null(),
            Test::IsNotNull => !value.is_null(),
        }
    }
}

/// A number operator's view of a value.
fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.parse::<f64>().ok().filter(|number| number.is_finite()),
        _ => None,
    }
}

/// BoolEquals' view of a value.
fn bool_of(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Runs `check` on a string operator's view of a value; false for values without one.
fn with_text(value: &Value, check: impl Fn(&str) -> bool) -> bool {
    match value {
        Value::String(text) => check(text),
        Value::Bool(true) => check("true"),
        Value::Bool(false) => check("false"),
        Value::Number(number) => NumberText::of(number).is_some_and(|text| check(text.as_str())),
        _ => false,
    }
}

/// A number's JSON text, formatted on the stack so string operators can read numbers without
/// allocating per event. The longest text serde_json prints for an `f64`, `i64` or `u64` is
/// 24 bytes.
struct NumberText {
    bytes: [u8; 40],
    len: usize,
}

impl NumberText {
    fn of(number: &Number) -> Option<NumberText> {
        let mut text = NumberText {
            bytes: [0; 40],
            len: 0,
        };
        write!(text, "{number}").ok()?;
        Some(text)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for NumberText {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        let end = self.len + piece.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(piece.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Checks `value` / `values` against what the operator takes and builds its test. Pushes
/// problems (with fields relative to the filter) and returns `None` when it finds any.
fn compile_test(filter: &AdvancedFilter, problems: &mut Vec<FieldProblem>) -> Option<Test> {
    let operator = &filter.operator_type;
    let name = operator.as_str();
    let operands = match operator {
        OperatorType::NumberIn | OperatorType::NumberNotIn => Operands::Numbers,
        OperatorType::NumberLessThan
        | OperatorType::NumberGreaterThan
        | OperatorType::NumberLessThanOrEquals
        | OperatorType::NumberGreaterThanOrEquals => Operands::Number,
        OperatorType::NumberInRange | OperatorType::NumberNotInRange => Operands::Ranges,
        OperatorType::BoolEquals => Operands::Bool,
        OperatorType::StringIn
        | OperatorType::StringNotIn
        | OperatorType::StringBeginsWith
        | OperatorType::StringNotBeginsWith
        | OperatorType::StringEndsWith
        | OperatorType::StringNotEndsWith
        | OperatorType::StringContains
        | OperatorType::StringNotContains => Operands::Strings,
        OperatorType::IsNullOrUndefined | OperatorType::IsNotNull => Operands::Nothing,
        OperatorType::Unknown(unknown) => {
            let known: Vec<&str> = OperatorType::ALL.iter().map(OperatorType::as_str).collect();
            problems.push(FieldProblem::new(
                "operatorType",
                format!(
                    "unknown operator '{unknown}'; expected one of {}",
                    known.join(", ")
                ),
            ));
            return None;
        }
    };
    let before = problems.len();
    let value = filter.value.as_ref();
    let values = filter.values.as_deref();

    let test = match operands {
        Operands::Numbers => {
            let numbers = list_operands(name, "number", value, values, problems, |index, item| {
                item.as_f64()
                    .ok_or_else(|| format!("{name} needs numbers; value {index} is {}", show(item)))
            });
            Test::NumberIn {
                values: numbers,
                negate: matches!(operator, OperatorType::NumberNotIn),
            }
        }
        Operands::Ranges => {
            let ranges = list_operands(
                name,
                "[min, max] pair",
                value,
                values,
                problems,
                |index, item| range_of(name, index, item),
            );
            Test::NumberInRange {
                ranges,
                negate: matches!(operator, OperatorType::NumberNotInRange),
            }
        }
        Operands::Strings => {
            let strings = list_operands(name, "string", value, values, problems, |index, item| {
                string_operand(name, index, item)
            });
            let (operation, negate) = match operator {
                OperatorType::StringIn => (StringOperation::In, false),
                OperatorType::StringNotIn => (StringOperation::In, true),
                OperatorType::StringBeginsWith => (StringOperation::BeginsWith, false),
                OperatorType::StringNotBeginsWith => (StringOperation::BeginsWith, true),
                OperatorType::StringEndsWith => (StringOperation::EndsWith, false),
                OperatorType::StringNotEndsWith => (StringOperation::EndsWith, true),
                OperatorType::StringContains => (StringOperation::Contains, false),
                _ => (StringOperation::Contains, true),
            };
            Test::String {
                operation,
                values: strings,
                negate,
            }
        }
        Operands::Number => {
            single_operand_only(name, "number", values, problems);
            let bound = value.and_then(Value::as_f64);
            if bound.is_none() {
                problems.push(FieldProblem::new(
                    "value",
                    format!("{name} takes a single number in 'value'"),
                ));
            }
            let comparison = match operator {
                OperatorType::NumberLessThan => Comparison::LessThan,
                OperatorType::NumberGreaterThan => Comparison::GreaterThan,
                OperatorType::NumberLessThanOrEquals => Comparison::LessThanOrEquals,
                _ => Comparison::GreaterThanOrEquals,
            };
            Test::NumberCompare {
                comparison,
                bound: bound.unwrap_or_default(),
            }
        }
        Operands::Bool => {
            single_operand_only(name, "boolean", values, problems);
            let wanted = value.and_then(Value::as_bool);
            if wanted.is_none() {
                problems.push(FieldProblem::new(
                    "value",
                    format!("{name} takes a single boolean in 'value'"),
                ));
            }
            Test::BoolEquals(wanted.unwrap_or_default())
        }
        Operands::Nothing => {
            if value.is_some() {
                problems.push(FieldProblem::new("value", format!("{name} takes no value")));
            }
            // An empty list says nothing, so it is let through; clients often send `[]`.
            if values.is_some_and(|values| !values.is_empty()) {
                problems.push(FieldProblem::new(
                    "values",
                    format!("{name} takes no values"),
                ));
            }
            if matches!(operator, OperatorType::IsNullOrUndefined) {
                Test::IsNullOrUndefined
            } else {
                Test::IsNotNull
            }
        }
    };
    (problems.len() == before).then_some(test)
}

/// Checks the `values` of a multi-valued operator, converting each with `convert`.
fn list_operands<T>(
    name: &str,
    kind: &str,
    value: Option<&Value>,
    values: Option<&[Value]>,
    problems: &mut Vec<FieldProblem>,
    convert: impl Fn(usize, &Value) -> Result<T, String>,
) -> Vec<T> {
    if value.is_some() {
        problems.push(FieldProblem::new(
            "value",
            format!("{name} takes its {kind}s in 'values', not 'value'"),
        ));
    }
    let values = values.unwrap_or_default();
    if values.is_empty() {
        problems.push(FieldProblem::new(
            "values",
            format!("{name} needs at least one {kind} in 'values'"),
        ));
    }
    let mut converted = Vec::with_capacity(values.len());
    for (index, item) in values.iter().enumerate() {
        match convert(index, item) {
            Ok(operand) => converted.push(operand),
            Err(message) => problems.push(FieldProblem::new("values", message)),
        }
    }
    converted
}

/// The single-operand operators take `value`; a `values` list is a mistake worth naming.
fn single_operand_only(
    name: &str,
    kind: &str,
    values: Option<&[Value]>,
    problems: &mut Vec<FieldProblem>,
) {
    if values.is_some() {
        problems.push(FieldProblem::new(
            "values",
            format!("{name} takes a single {kind} in 'value', not 'values'"),
        ));
    }
}

/// One `[min, max]` pair of NumberInRange / NumberNotInRange.
fn range_of(name: &str, index: usize, item: &Value) -> Result<(f64, f64), String> {
    let pair = match item.as_array().map(Vec::as_slice) {
        Some([min, max]) => min.as_f64().zip(max.as_f64()),
        _ => None,
    };
    match pair {
        Some((min, max)) if min <= max => Ok((min, max)),
        Some(_) => Err(format!(
            "{name} needs [min, max] pairs with min <= max; value {index} is {}",
            show(item)
        )),
        None => Err(format!(
            "{name} needs [min, max] pairs; value {index} is {}",
            show(item)
        )),
    }
}

/// One value of a String operator, lower-cased for matching.
fn string_operand(name: &str, index: usize, item: &Value) -> Result<Folded, String> {
    let Some(text) = item.as_str() else {
        return Err(format!(
            "{name} needs strings; value {index} is {}",
            show(item)
        ));
    };
    let length = text.chars().count();
    if length > MAX_STRING_VALUE_CHARS {
        return Err(format!(
            "{name} value {index} is {length} characters; at most {MAX_STRING_VALUE_CHARS} are allowed"
        ));
    }
    Ok(Folded::new(text))
}

/// A value as JSON for a message, cut short so a huge value cannot flood a status condition.
fn show(value: &Value) -> String {
    const MAX_CHARS: usize = 64;
    let text = value.to_string();
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        let mut cut: String = text.chars().take(MAX_CHARS).collect();
        cut.push('…');
        cut
    }
}

/// Where a filter's key points in an event: a top-level attribute, then object fields.
#[derive(Clone, Debug)]
struct KeyPath {
    /// The attribute, lower-cased: CloudEvents attribute names are lower case, and Event
    /// Grid's own examples write keys like `Subject` and `Data.Key1`.
    attribute: String,
    /// The CloudEvents attribute to read when the event has no attribute named `attribute`,
    /// for the key names the doc lists for CloudEvents: "use the following values for the
    /// key: `eventid`, `source`, `eventtype`, `eventtypeversion`, or event data".
    alias: Option<&'static str>,
    /// Field names below the attribute, as written.
    path: Vec<String>,
}

impl KeyPath {
    fn compile(key: &str, problems: &mut Vec<FieldProblem>) -> Option<KeyPath> {
        if key.trim().is_empty() {
            problems.push(FieldProblem::new("key", "key must not be empty"));
            return None;
        }
        // Doc: "To access fields in the data section, use the `.` (dot) notation", and, under
        // limitations, "Keys with `.` (dot) character in them ... Currently, there's no
        // support for escape characters in keys." So every dot separates two names.
        let mut segments = key.split('.');
        let attribute = segments.next().unwrap_or_default();
        let path: Vec<String> = segments.map(str::to_string).collect();
        if attribute.is_empty() || path.iter().any(String::is_empty) {
            problems.push(FieldProblem::new(
                "key",
                format!(
                    "key '{key}' has an empty name between dots; write it like data.order.total"
                ),
            ));
            return None;
        }
        let attribute: String = attribute.chars().flat_map(char::to_lowercase).collect();
        let alias = match attribute.as_str() {
            "eventid" => Some("id"),
            "eventtype" => Some("type"),
            _ => None,
        };
        Some(KeyPath {
            attribute,
            alias,
            path,
        })
    }

    /// The value the key points at, if the event has one. Paths only descend through
    /// objects: `data.a` finds nothing in an event whose data is `data_base64` or a string.
    fn resolve<'e>(&self, event: &'e Value) -> Option<&'e Value> {
        let attributes = event.as_object()?;
        let mut current = field(attributes, &self.attribute)
            .or_else(|| self.alias.and_then(|alias| attributes.get(alias)))?;
        for name in &self.path {
            current = field(current.as_object()?, name)?;
        }
        Some(current)
    }
}

/// A field by exact name, else by a name equal ignoring case (Event Grid's examples mix
/// `data.key1` with `Data.Key1`). The exact name wins when both exist.
fn field<'e>(object: &'e Map<String, Value>, name: &str) -> Option<&'e Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(candidate, _)| names_equal_ignoring_case(candidate, name))
            .map(|(_, value)| value)
    })
}

fn names_equal_ignoring_case(left: &str, right: &str) -> bool {
    if left.is_ascii() && right.is_ascii() {
        left.eq_ignore_ascii_case(right)
    } else {
        lowered(left).eq(lowered(right))
    }
}

/// A filter string lower-cased once at compile time, with [`lowered`] (not
/// `str::to_lowercase`, whose Greek final sigma depends on context) so it agrees exactly with
/// the lower-casing applied to event strings while matching.
#[derive(Clone, Debug)]
struct Folded {
    text: String,
    ascii: bool,
}

impl Folded {
    fn new(text: &str) -> Folded {
        let text: String = lowered(text).collect();
        let ascii = text.is_ascii();
        Folded { text, ascii }
    }
}

/// `text` lower-cased character by character, without allocating. The Greek final sigma
/// `ς`, which is already lower case, is read as `σ` so that `ΟΔΟΣ` and `οδος` compare equal.
fn lowered(text: &str) -> impl Iterator<Item = char> + Clone + '_ {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(fold_final_sigma)
}

/// `text` lower-cased as [`lowered`] does, and reversed, without allocating.
fn lowered_reversed(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars()
        .rev()
        .flat_map(|c| c.to_lowercase().rev())
        .map(fold_final_sigma)
}

fn fold_final_sigma(c: char) -> char {
    if c == 'ς' { 'σ' } else { c }
}

/// Whether `haystack` starts with every item of `needle`, in order.
fn iter_starts_with(
    mut haystack: impl Iterator<Item = char>,
    mut needle: impl Iterator<Item = char>,
) -> bool {
    needle.all(|wanted| haystack.next() == Some(wanted))
}

// "All string comparisons aren't case-sensitive" (doc). When both sides are ASCII the byte
// comparisons below decide; otherwise the event string is lower-cased lazily, character by
// character, and compared with the filter's lower-cased text.

fn string_equals(text: &str, wanted: &Folded) -> bool {
    if wanted.ascii && text.is_ascii() {
        text.eq_ignore_ascii_case(&wanted.text)
    } else {
        lowered(text).eq(wanted.text.chars())
    }
}

fn string_begins_with(text: &str, wanted: &Folded) -> bool {
    if wanted.ascii && text.is_ascii() {
        text.as_bytes()
            .get(..wanted.text.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(wanted.text.as_bytes()))
    } else {
        iter_starts_with(lowered(text), wanted.text.chars())
    }
}

fn string_ends_with(text: &str, wanted: &Folded) -> bool {
    if wanted.ascii && text.is_ascii() {
        text.len() >= wanted.text.len()
            && text.as_bytes()[text.len() - wanted.text.len()..]
                .eq_ignore_ascii_case(wanted.text.as_bytes())
    } else {
        iter_starts_with(lowered_reversed(text), wanted.text.chars().rev())
    }
}

fn string_contains(text: &str, wanted: &Folded) -> bool {
    if wanted.text.is_empty() {
        return true;
    }
    if wanted.ascii && text.is_ascii() {
        text.as_bytes()
            .windows(wanted.text.len())
            .any(|window| window.eq_ignore_ascii_case(wanted.text.as_bytes()))
    } else {
        let mut rest = lowered(text);
        loop {
            if iter_starts_with(rest.clone(), wanted.text.chars()) {
                return true;
            }
            if rest.next().is_none() {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests;

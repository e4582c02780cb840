//! MQTT topic names, topic filters, shared subscriptions and Event Grid topic templates.
//!
//! The rules are MQTT 3.1.1 / 5.0 (OASIS) plus the limits Azure Event Grid namespaces put on
//! top of them:
//!
//! * a topic or topic filter is at most [`MAX_TOPIC_BYTES`] bytes of UTF-8 and has at most
//!   [`MAX_TOPIC_LEVELS`] `/`-separated levels (wildcard levels count; `a//b` has three);
//! * levels may be empty; the NUL character is forbidden everywhere;
//! * `+` and `#` are wildcards only when they fill a whole level, `#` only as the last level,
//!   and a topic name (what a client PUBLISHes to) contains neither;
//! * a filter whose first level is a wildcard never matches a topic that starts with `$`;
//! * `$share/<group>/<filter>` is a shared subscription, not a filter;
//! * a topic template is a filter whose levels may also be a variable,
//!   `${client.authenticationName}` or `${client.attributes.<name>}`, filling the whole level.
//!   Templates cannot start with `$`, which Event Grid reserves for itself.

use crate::attributes::{AttributeValue, Attributes};
use std::borrow::Cow;
use std::fmt;

/// Event Grid's limit on the size of a topic or topic filter, in bytes of UTF-8.
pub const MAX_TOPIC_BYTES: usize = 256;

/// Event Grid's limit on the number of `/`-separated levels of a topic or topic filter.
pub const MAX_TOPIC_LEVELS: usize = 8;

/// Event Grid's limit on the number of topic templates in one topic space.
pub const MAX_TEMPLATES_PER_TOPIC_SPACE: usize = 10;

const SHARE_LEVEL: &str = "$share";
const AUTHENTICATION_NAME: &str = "client.authenticationName";
const ATTRIBUTE_PREFIX: &str = "client.attributes.";

/// Why a topic, topic filter, shared subscription or topic template is invalid, in words meant
/// for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopicError(pub String);

impl TopicError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Checks a topic name as a client PUBLISHes it: MQTT's rules (non-empty, no NUL, no
/// wildcards) and Event Grid's size and level limits.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    let levels = check_shape(topic, "topic")?;
    for (index, level) in levels.iter().enumerate() {
        if let Some(wildcard) = level.chars().find(|c| matches!(c, '+' | '#')) {
            return Err(TopicError::new(format!(
                "'{wildcard}' is a wildcard and cannot appear in a topic name (level {} of '{}'); \
                 wildcards belong in subscriptions",
                index + 1,
                shown(topic)
            )));
        }
    }
    Ok(())
}

/// One level of a parsed filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FilterLevel {
    Literal(String),
    /// `+`
    SingleLevel,
    /// `#`
    MultiLevel,
}

impl FilterLevel {
    fn is_wildcard(&self) -> bool {
        !matches!(self, FilterLevel::Literal(_))
    }
}

/// A validated MQTT topic filter (may contain `+` and `#`), as a client SUBSCRIBEs with it or
/// as a topic space grants it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter {
    text: String,
    levels: Vec<FilterLevel>,
}

impl TopicFilter {
    /// Parses and validates a topic filter. A `$share/<group>/<filter>` subscription is not a
    /// filter: split it with [`parse_shared_subscription`] first.
    pub fn parse(filter: &str) -> Result<TopicFilter, TopicError> {
        let raw_levels = check_shape(filter, "topic filter")?;
        if raw_levels.first() == Some(&SHARE_LEVEL) {
            return Err(TopicError::new(format!(
                "'{}' is a shared subscription ('$share/<group>/<filter>'), not a plain topic filter",
                shown(filter)
            )));
        }
        let count = raw_levels.len();
        let mut levels = raw_levels
            .iter()
            .enumerate()
            .map(|(index, level)| wildcard_level(level, index, count, filter, "topic filter"))
            .collect::<Result<Vec<_>, _>>()?;
        levels.shrink_to_fit();
        Ok(TopicFilter {
            text: filter.to_owned(),
            levels,
        })
    }

    /// The filter as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a message published to `topic` (a valid topic name) is delivered through this
    /// filter.
    pub fn matches(&self, topic: &str) -> bool {
        // MQTT keeps `$` topics (broker-internal ones such as `$SYS/...`) out of reach of
        // subscriptions that merely happen to start with a wildcard.
        if topic.starts_with('$') && self.starts_with_wildcard() {
            return false;
        }
        let mut topic_levels = topic.split('/');
        for level in &self.levels {
            match level {
                // `#` also matches the parent level: `a/#` matches `a`.
                FilterLevel::MultiLevel => return true,
                FilterLevel::SingleLevel => {
                    if topic_levels.next().is_none() {
                        return false;
                    }
                }
                FilterLevel::Literal(literal) => {
                    if topic_levels.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        topic_levels.next().is_none()
    }

    /// True when every topic this `other` filter matches is also matched by self (used to decide
    /// whether a topic space covers a SUBSCRIBE filter). Exact, not approximate.
    pub fn covers(&self, other: &TopicFilter) -> bool {
        let other_can_reach_dollar_topics = matches!(
            other.levels.first(),
            Some(FilterLevel::Literal(literal)) if literal.starts_with('$')
        );
        if other_can_reach_dollar_topics && self.starts_with_wildcard() {
            return false;
        }

        // `P/#` matches its parent topic `P` too, except when `P` is not a valid topic name:
        // for a lone `#` (no levels) and for `/#` (the parent would be the empty string).
        // Such a `#` matches exactly what `P/+/#` matches; rewriting it lets the level walk
        // below treat every `#` in `other` as "this level is absent, or anything from here on".
        let rewritten: Vec<FilterLevel>;
        let theirs: &[FilterLevel] = match other.levels.split_last() {
            Some((FilterLevel::MultiLevel, parent))
                if parent.is_empty() || parent == [FilterLevel::Literal(String::new())] =>
            {
                rewritten = parent
                    .iter()
                    .cloned()
                    .chain([FilterLevel::SingleLevel, FilterLevel::MultiLevel])
                    .collect();
                &rewritten
            }
            _ => &other.levels,
        };

        for (index, mine) in self.levels.iter().enumerate() {
            match (mine, theirs.get(index)) {
                (FilterLevel::MultiLevel, _) => return true,
                // Every topic of `other` has exactly `index` levels; self needs more.
                (_, None) => return false,
                // `other`'s `#` matches the parent topic, which has no level here for `+`.
                (FilterLevel::SingleLevel, Some(FilterLevel::MultiLevel)) => return false,
                (FilterLevel::SingleLevel, Some(_)) => {}
                (FilterLevel::Literal(a), Some(FilterLevel::Literal(b))) if a == b => {}
                (FilterLevel::Literal(_), Some(_)) => return false,
            }
        }
        // Self has no `#`, so it matches topics of exactly its own length only.
        theirs.len() == self.levels.len()
    }

    fn starts_with_wildcard(&self) -> bool {
        self.levels.first().is_some_and(FilterLevel::is_wildcard)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A shared subscription, `$share/<group>/<filter>`, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSubscription<'a> {
    /// The share group: subscribers in the same group take turns receiving messages.
    pub group: &'a str,
    /// The topic filter after the group; already validated with [`TopicFilter::parse`].
    pub filter: &'a str,
}

/// `Ok(Some(..))` for `$share/g/f`, `Ok(None)` for a normal filter, Err for a malformed
/// `$share/...` (no group, a group with wildcards, no filter, or an invalid filter).
///
/// Event Grid's limits apply to the filter after the group, which is what topic spaces grant.
pub fn parse_shared_subscription(
    filter: &str,
) -> Result<Option<SharedSubscription<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_LEVEL) else {
        return Ok(None);
    };
    let rest = match rest.strip_prefix('/') {
        Some(rest) => rest,
        // `$shared/...` is an ordinary filter that merely starts like one.
        None if !rest.is_empty() => return Ok(None),
        None => {
            return Err(TopicError::new(
                "'$share' starts a shared subscription but names no group or filter; \
                 write '$share/<group>/<filter>'",
            ));
        }
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(if rest.is_empty() {
            TopicError::new(
                "shared subscription '$share/' names no group; write '$share/<group>/<filter>'",
            )
        } else {
            TopicError::new(format!(
                "shared subscription '{}' has no topic filter after the group; \
                 write '$share/{}/<filter>'",
                shown(filter),
                shown(rest)
            ))
        });
    };
    if group.is_empty() {
        return Err(TopicError::new(format!(
            "shared subscription '{}' has an empty group name; write '$share/<group>/<filter>'",
            shown(filter)
        )));
    }
    if group.contains(['+', '#']) {
        return Err(TopicError::new(format!(
            "the group name '{}' of shared subscription '{}' cannot contain the wildcards '+' or '#'",
            shown(group),
            shown(filter)
        )));
    }
    if group.contains('\0') {
        return Err(TopicError::new(format!(
            "the group name of shared subscription '{}' contains the NUL character (U+0000), \
             which MQTT forbids",
            shown(filter)
        )));
    }
    TopicFilter::parse(inner).map_err(|error| {
        TopicError::new(format!(
            "in shared subscription '{}': {error}",
            shown(filter)
        ))
    })?;
    Ok(Some(SharedSubscription {
        group,
        filter: inner,
    }))
}

/// What a template needs to know about one client.
#[derive(Debug, Clone, Copy)]
pub struct ClientIdentity<'a> {
    /// The name the client authenticated with; the value of `${client.authenticationName}`.
    pub authentication_name: &'a str,
    /// The client's attributes; `${client.attributes.<name>}` reads them.
    pub attributes: &'a Attributes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Variable {
    AuthenticationName,
    Attribute(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateLevel {
    Filter(FilterLevel),
    Variable(Variable),
}

/// A topic template of an Event Grid topic space: a topic filter whose levels may also be
/// `${client.authenticationName}` or `${client.attributes.<name>}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    text: String,
    levels: Vec<TemplateLevel>,
}

impl TopicTemplate {
    /// Parses and validates a topic template. The error names the level, the variable and
    /// what is wrong with it.
    pub fn parse(template: &str) -> Result<TopicTemplate, TopicError> {
        let raw_levels = check_shape(template, "topic template")?;
        if raw_levels.first() == Some(&SHARE_LEVEL) {
            return Err(TopicError::new(format!(
                "topic template '{}' starts with '$share'; a shared subscription is authorized by \
                 the filter after its group, so write the template without '$share/<group>/'",
                shown(template)
            )));
        }
        let count = raw_levels.len();
        let mut levels = Vec::with_capacity(count);
        for (index, level) in raw_levels.iter().enumerate() {
            let parsed = if let Some(start) = level.find("${") {
                TemplateLevel::Variable(variable_level(level, start, index)?)
            } else {
                let parsed = wildcard_level(level, index, count, template, "topic template")?;
                // Checked per level rather than on the text: a template may well start with a
                // variable, whose `${` is not a reserved `$` topic.
                if index == 0 && level.starts_with('$') {
                    return Err(TopicError::new(format!(
                        "topic template '{}' starts with '$'; Event Grid reserves topics that \
                         start with '$' for its own use",
                        shown(template)
                    )));
                }
                TemplateLevel::Filter(parsed)
            };
            levels.push(parsed);
        }

        // Values are at least one byte, so this is the shortest filter the template can
        // produce; a template that can never fit would silently grant nothing.
        let shortest: usize = levels
            .iter()
            .zip(&raw_levels)
            .map(|(level, raw)| match level {
                TemplateLevel::Variable(_) => 1,
                TemplateLevel::Filter(_) => raw.len(),
            })
            .sum::<usize>()
            + (count - 1);
        if shortest > MAX_TOPIC_BYTES {
            return Err(TopicError::new(format!(
                "topic template can never fit Event Grid's limit of {MAX_TOPIC_BYTES} bytes: even \
                 with one-character values its topic filter would be {shortest} bytes long"
            )));
        }

        Ok(TopicTemplate {
            text: template.to_owned(),
            levels,
        })
    }

    /// The template as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the template depends on the client (has at least one variable).
    pub fn has_variables(&self) -> bool {
        self.levels
            .iter()
            .any(|level| matches!(level, TemplateLevel::Variable(_)))
    }

    /// Attribute names used by `${client.attributes.x}` variables, each once, in the order they
    /// first appear.
    pub fn attribute_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for level in &self.levels {
            if let TemplateLevel::Variable(Variable::Attribute(name)) = level
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }

    /// The filter for this client, or None when the client lacks a usable value for a
    /// variable: a missing attribute, a string-array attribute, or a value that is not a single
    /// topic level (empty, or containing `/`, `+`, `#` or NUL), that would make the filter start
    /// with `$`, or that would push the filter past Event Grid's limits.
    pub fn expand(&self, client: &ClientIdentity<'_>) -> Option<TopicFilter> {
        let mut text = String::with_capacity(self.text.len());
        for (index, level) in self.levels.iter().enumerate() {
            if index > 0 {
                text.push('/');
            }
            match level {
                TemplateLevel::Filter(FilterLevel::Literal(literal)) => text.push_str(literal),
                TemplateLevel::Filter(FilterLevel::SingleLevel) => text.push('+'),
                TemplateLevel::Filter(FilterLevel::MultiLevel) => text.push('#'),
                TemplateLevel::Variable(variable) => {
                    let value = variable_value(variable, client)?;
                    // A value must not smuggle in extra levels or wildcards: that would widen
                    // what the client is granted beyond its own level.
                    if !is_single_level(&value) {
                        return None;
                    }
                    // Templates may not start with `$`; neither may what they expand to.
                    if index == 0 && value.starts_with('$') {
                        return None;
                    }
                    text.push_str(&value);
                }
            }
        }
        TopicFilter::parse(&text).ok()
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn variable_value<'c>(variable: &Variable, client: &ClientIdentity<'c>) -> Option<Cow<'c, str>> {
    match variable {
        Variable::AuthenticationName => Some(Cow::Borrowed(client.authentication_name)),
        Variable::Attribute(name) => match client.attributes.get(name)? {
            AttributeValue::String(value) => Some(Cow::Borrowed(value.as_str())),
            AttributeValue::Integer(value) => Some(Cow::Owned(value.to_string())),
            // A list names several levels at once; Event Grid grants nothing for it.
            AttributeValue::StringArray(_) => None,
        },
    }
}

fn is_single_level(value: &str) -> bool {
    !value.is_empty() && !value.contains(['/', '+', '#', '\0'])
}

/// The checks shared by names, filters and templates; returns the levels.
fn check_shape<'t>(text: &'t str, what: &str) -> Result<Vec<&'t str>, TopicError> {
    if text.is_empty() {
        return Err(TopicError::new(format!("a {what} must not be empty")));
    }
    let levels: Vec<&str> = text.split('/').collect();
    if let Some(index) = levels.iter().position(|level| level.contains('\0')) {
        return Err(TopicError::new(format!(
            "{what} contains the NUL character (U+0000) in level {}, which MQTT forbids",
            index + 1
        )));
    }
    // Templates are measured after expansion instead: their variables' text is not what ends
    // up in the filter.
    if what != "topic template" && text.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::new(format!(
            "{what} is {} bytes long; Event Grid allows at most {MAX_TOPIC_BYTES}",
            text.len()
        )));
    }
    if levels.len() > MAX_TOPIC_LEVELS {
        return Err(TopicError::new(format!(
            "{what} has {} levels; Event Grid allows at most {MAX_TOPIC_LEVELS}",
            levels.len()
        )));
    }
    Ok(levels)
}

/// Classifies one level of a filter or template that holds no variable.
fn wildcard_level(
    level: &str,
    index: usize,
    count: usize,
    text: &str,
    what: &str,
) -> Result<FilterLevel, TopicError> {
    let number = index + 1;
    match level {
        "#" if number == count => Ok(FilterLevel::MultiLevel),
        "#" => Err(TopicError::new(format!(
            "'#' must be the last level of a {what} (level {number} of '{}')",
            shown(text)
        ))),
        "+" => Ok(FilterLevel::SingleLevel),
        _ => {
            if let Some(wildcard) = level.chars().find(|c| matches!(c, '+' | '#')) {
                Err(TopicError::new(format!(
                    "'{wildcard}' must fill a whole level of a {what} (level {number} is '{}')",
                    shown(level)
                )))
            } else {
                Ok(FilterLevel::Literal(level.to_owned()))
            }
        }
    }
}

/// Parses a template level that contains `${`, starting at byte `start`.
fn variable_level(level: &str, start: usize, index: usize) -> Result<Variable, TopicError> {
    let number = index + 1;
    let whole_level = || {
        TopicError::new(format!(
            "a variable must fill a whole level (level {number} is '{}')",
            shown(level)
        ))
    };
    let Some(name) = level
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    else {
        return Err(if level[start..].contains('}') {
            whole_level()
        } else {
            TopicError::new(format!(
                "the variable in level {number} is not closed: '{}' needs a '}}'",
                shown(&level[start..])
            ))
        });
    };
    // `${a}${b}` and `${a}x}` also pass the prefix/suffix test; a name never holds these.
    if name.contains("${") || name.contains('}') {
        return Err(whole_level());
    }
    if name == AUTHENTICATION_NAME {
        return Ok(Variable::AuthenticationName);
    }
    match name.strip_prefix(ATTRIBUTE_PREFIX) {
        Some("") => Err(TopicError::new(format!(
            "the variable '${{{}}}' in level {number} names no attribute; \
             write ${{client.attributes.<name>}}",
            shown(name)
        ))),
        Some(attribute) => Ok(Variable::Attribute(attribute.to_owned())),
        None => Err(TopicError::new(format!(
            "unknown variable '${{{}}}' in level {number}; use ${{client.authenticationName}} \
             or ${{client.attributes.<name>}}",
            shown(name)
        ))),
    }
}

/// User text for an error message: control characters would garble the logs and status
/// conditions these messages end up in, so they are shown escaped.
fn shown(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(
            text.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_unicode().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests;

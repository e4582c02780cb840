use super::*;
use proptest::prelude::*;
use regex::Regex;

fn filter(text: &str) -> TopicFilter {
    TopicFilter::parse(text).unwrap_or_else(|e| panic!("'{text}' should parse: {e}"))
}

fn template(text: &str) -> TopicTemplate {
    TopicTemplate::parse(text).unwrap_or_else(|e| panic!("'{text}' should parse: {e}"))
}

fn filter_error(text: &str) -> String {
    TopicFilter::parse(text).expect_err("should be rejected").0
}

fn template_error(text: &str) -> String {
    TopicTemplate::parse(text)
        .expect_err("should be rejected")
        .0
}

fn name_error(text: &str) -> String {
    validate_topic_name(text).expect_err("should be rejected").0
}

fn share_error(text: &str) -> String {
    parse_shared_subscription(text)
        .expect_err("should be rejected")
        .0
}

fn attributes(pairs: &[(&str, AttributeValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

fn expand(template_text: &str, name: &str, attributes: &Attributes) -> Option<String> {
    template(template_text)
        .expand(&ClientIdentity {
            authentication_name: name,
            attributes,
        })
        .map(|f| f.as_str().to_owned())
}

fn levels(count: usize) -> String {
    vec!["l"; count].join("/")
}

// ---- topic names ----

#[test]
fn plain_topic_names_are_valid() {
    for topic in ["a", "devices/d1/telemetry", "a b/ü/日本", "$SYS/broker"] {
        assert_eq!(validate_topic_name(topic), Ok(()), "{topic}");
    }
}

#[test]
fn empty_levels_are_allowed_in_topic_names() {
    for topic in ["a//b", "/", "/a", "a/", "//"] {
        assert_eq!(validate_topic_name(topic), Ok(()), "{topic}");
    }
}

#[test]
fn an_empty_topic_name_is_rejected() {
    assert_eq!(name_error(""), "a topic must not be empty");
}

#[test]
fn wildcards_are_rejected_in_topic_names_wherever_they_appear() {
    assert_eq!(
        name_error("a/+"),
        "'+' is a wildcard and cannot appear in a topic name (level 2 of 'a/+'); \
         wildcards belong in subscriptions"
    );
    assert_eq!(
        name_error("a/b/c#"),
        "'#' is a wildcard and cannot appear in a topic name (level 3 of 'a/b/c#'); \
         wildcards belong in subscriptions"
    );
    assert!(validate_topic_name("#").is_err());
}

#[test]
fn the_nul_character_is_rejected_in_topic_names() {
    assert_eq!(
        name_error("a/b\0c"),
        "topic contains the NUL character (U+0000) in level 2, which MQTT forbids"
    );
}

#[test]
fn topic_names_may_have_at_most_8_levels() {
    assert_eq!(validate_topic_name(&levels(8)), Ok(()));
    assert_eq!(
        name_error(&levels(9)),
        "topic has 9 levels; Event Grid allows at most 8"
    );
    // Empty levels count like any other.
    assert_eq!(
        name_error("////////"),
        "topic has 9 levels; Event Grid allows at most 8"
    );
}

#[test]
fn topic_names_may_be_at_most_256_bytes_counted_in_utf8() {
    assert_eq!(validate_topic_name(&"a".repeat(256)), Ok(()));
    assert_eq!(
        name_error(&"a".repeat(257)),
        "topic is 257 bytes long; Event Grid allows at most 256"
    );
    // 86 characters, but 258 bytes.
    assert_eq!(
        name_error(&"ü".repeat(129)),
        "topic is 258 bytes long; Event Grid allows at most 256"
    );
}

// ---- filters ----

#[test]
fn a_filter_keeps_its_text() {
    let parsed = filter("devices/+/telemetry/#");
    assert_eq!(parsed.as_str(), "devices/+/telemetry/#");
    assert_eq!(parsed.to_string(), "devices/+/telemetry/#");
}

#[test]
fn multi_level_wildcard_must_be_the_last_level() {
    assert_eq!(
        filter_error("a/#/b"),
        "'#' must be the last level of a topic filter (level 2 of 'a/#/b')"
    );
}

#[test]
fn multi_level_wildcard_must_fill_its_level() {
    assert_eq!(
        filter_error("a/b#"),
        "'#' must fill a whole level of a topic filter (level 2 is 'b#')"
    );
    assert!(TopicFilter::parse("a/#b").is_err());
}

#[test]
fn single_level_wildcard_must_fill_its_level() {
    assert_eq!(
        filter_error("a/b+/c"),
        "'+' must fill a whole level of a topic filter (level 2 is 'b+')"
    );
    assert!(TopicFilter::parse("+a").is_err());
}

#[test]
fn wildcards_may_appear_in_several_levels() {
    for text in ["+/+/+", "+/#", "#", "+", "a/+/b/#", "/+/", "+//#"] {
        assert!(TopicFilter::parse(text).is_ok(), "{text}");
    }
}

#[test]
fn filters_obey_event_grids_limits_with_wildcard_levels_counted() {
    assert!(TopicFilter::parse("a/b/c/d/e/f/g/#").is_ok());
    assert_eq!(
        filter_error("a/b/c/d/e/f/g/h/#"),
        "topic filter has 9 levels; Event Grid allows at most 8"
    );
    assert!(TopicFilter::parse(&"a".repeat(256)).is_ok());
    assert_eq!(
        filter_error(&format!("{}/#", "a".repeat(255))),
        "topic filter is 257 bytes long; Event Grid allows at most 256"
    );
}

#[test]
fn empty_filters_and_nul_characters_are_rejected() {
    assert_eq!(filter_error(""), "a topic filter must not be empty");
    assert_eq!(
        filter_error("a/+/\0"),
        "topic filter contains the NUL character (U+0000) in level 3, which MQTT forbids"
    );
}

#[test]
fn a_shared_subscription_is_not_a_plain_filter() {
    assert_eq!(
        filter_error("$share/g/a"),
        "'$share/g/a' is a shared subscription ('$share/<group>/<filter>'), \
         not a plain topic filter"
    );
    assert!(TopicFilter::parse("$share").is_err());
    assert!(TopicFilter::parse("$shared/a").is_ok());
}

#[test]
fn error_messages_escape_control_characters() {
    assert_eq!(
        filter_error("a\n+"),
        "'+' must fill a whole level of a topic filter (level 1 is 'a\\u{a}+')"
    );
}

// ---- matching ----

#[test]
fn a_literal_filter_matches_only_the_same_topic() {
    let f = filter("a/b");
    assert!(f.matches("a/b"));
    assert!(!f.matches("a"));
    assert!(!f.matches("a/b/c"));
    assert!(!f.matches("a/bc"));
}

#[test]
fn matching_is_case_sensitive() {
    assert!(!filter("Devices/d1").matches("devices/d1"));
}

#[test]
fn single_level_wildcard_matches_exactly_one_level() {
    let f = filter("a/+/c");
    assert!(f.matches("a/b/c"));
    assert!(!f.matches("a/c"));
    assert!(!f.matches("a/b/x/c"));
    assert!(filter("+").matches("a"));
    assert!(!filter("+").matches("a/b"));
}

#[test]
fn single_level_wildcard_matches_an_empty_level() {
    assert!(filter("a/+/c").matches("a//c"));
    assert!(filter("a/+").matches("a/"));
    assert!(filter("+/+").matches("/"));
}

#[test]
fn multi_level_wildcard_matches_the_parent_level() {
    assert!(filter("a/#").matches("a"));
    assert!(filter("a/b/#").matches("a/b"));
    assert!(!filter("a/b/#").matches("a"));
}

#[test]
fn multi_level_wildcard_matches_any_depth_below() {
    let f = filter("a/#");
    for topic in ["a/", "a/b", "a/b/c/d/e/f/g/h"] {
        assert!(f.matches(topic), "{topic}");
    }
    assert!(!f.matches("b/a"));
    assert!(filter("+/#").matches("x"));
}

#[test]
fn a_lone_multi_level_wildcard_matches_every_topic_not_starting_with_dollar() {
    let f = filter("#");
    for topic in ["a", "/", "a/b/c", "x$"] {
        assert!(f.matches(topic), "{topic}");
    }
    assert!(!f.matches("$SYS/uptime"));
}

#[test]
fn filters_starting_with_a_wildcard_do_not_match_dollar_topics() {
    assert!(!filter("+/uptime").matches("$SYS/uptime"));
    assert!(!filter("+").matches("$x"));
    assert!(!filter("+/#").matches("$SYS/a"));
    // Only the first level counts.
    assert!(filter("a/+").matches("a/$x"));
}

#[test]
fn filters_naming_the_dollar_level_match_dollar_topics() {
    assert!(filter("$SYS/#").matches("$SYS/uptime"));
    assert!(filter("$SYS/#").matches("$SYS"));
    assert!(filter("$SYS/+").matches("$SYS/uptime"));
}

#[test]
fn a_leading_slash_makes_an_empty_first_level() {
    assert!(filter("/a").matches("/a"));
    assert!(!filter("/a").matches("a"));
    assert!(filter("+/a").matches("/a"));
}

// ---- covers ----

#[test]
fn a_filter_covers_itself() {
    for text in ["a", "a/+/b", "#", "+/#", "$SYS/#", "a//"] {
        assert!(filter(text).covers(&filter(text)), "{text}");
    }
}

#[test]
fn multi_level_wildcard_covers_its_parent_and_everything_below() {
    let f = filter("a/#");
    for other in ["a", "a/b", "a/+", "a/+/c/#", "a/#"] {
        assert!(f.covers(&filter(other)), "{other}");
    }
    assert!(!f.covers(&filter("b")));
    assert!(!f.covers(&filter("+/b")));
}

#[test]
fn single_level_wildcard_covers_literals_and_itself_but_not_multi_level() {
    let f = filter("a/+");
    assert!(f.covers(&filter("a/b")));
    assert!(f.covers(&filter("a/+")));
    // `a/#` also matches `a` itself, which `a/+` does not.
    assert!(!f.covers(&filter("a/#")));
    assert!(!f.covers(&filter("a")));
    assert!(!f.covers(&filter("a/b/c")));
}

#[test]
fn a_lone_multi_level_wildcard_is_the_same_set_as_plus_then_hash() {
    assert!(filter("+/#").covers(&filter("#")));
    assert!(filter("#").covers(&filter("+/#")));
    assert!(!filter("+").covers(&filter("#")));
    assert!(!filter("+/+/#").covers(&filter("#")));
}

#[test]
fn a_literal_never_covers_a_wildcard() {
    assert!(!filter("a/b").covers(&filter("a/+")));
    assert!(!filter("a/b").covers(&filter("a/#")));
}

#[test]
fn filters_of_different_lengths_without_hash_do_not_cover_each_other() {
    assert!(!filter("a/b").covers(&filter("a/b/c")));
    assert!(!filter("a/b/c").covers(&filter("a/b")));
}

#[test]
fn wildcard_first_filters_do_not_cover_dollar_filters() {
    assert!(!filter("#").covers(&filter("$SYS/#")));
    assert!(!filter("+/uptime").covers(&filter("$SYS/uptime")));
    assert!(filter("$SYS/#").covers(&filter("$SYS/uptime")));
    assert!(filter("#").covers(&filter("a/$x")));
}

// ---- shared subscriptions ----

#[test]
fn a_shared_subscription_splits_into_group_and_filter() {
    assert_eq!(
        parse_shared_subscription("$share/workers/orders/+/#"),
        Ok(Some(SharedSubscription {
            group: "workers",
            filter: "orders/+/#",
        }))
    );
}

#[test]
fn ordinary_filters_are_not_shared_subscriptions() {
    for text in ["a/b", "#", "$SYS/#", "$shared/a", "a/$share/b"] {
        assert_eq!(parse_shared_subscription(text), Ok(None), "{text}");
    }
}

#[test]
fn a_shared_subscription_needs_a_group() {
    assert_eq!(
        share_error("$share"),
        "'$share' starts a shared subscription but names no group or filter; \
         write '$share/<group>/<filter>'"
    );
    assert_eq!(
        share_error("$share/"),
        "shared subscription '$share/' names no group; write '$share/<group>/<filter>'"
    );
    assert_eq!(
        share_error("$share//a"),
        "shared subscription '$share//a' has an empty group name; \
         write '$share/<group>/<filter>'"
    );
}

#[test]
fn a_shared_subscription_needs_a_filter() {
    assert_eq!(
        share_error("$share/g"),
        "shared subscription '$share/g' has no topic filter after the group; \
         write '$share/g/<filter>'"
    );
    assert_eq!(
        share_error("$share/g/"),
        "in shared subscription '$share/g/': a topic filter must not be empty"
    );
}

#[test]
fn a_share_group_cannot_hold_wildcards_or_nul() {
    assert_eq!(
        share_error("$share/g+/a"),
        "the group name 'g+' of shared subscription '$share/g+/a' cannot contain \
         the wildcards '+' or '#'"
    );
    assert!(parse_shared_subscription("$share/#/a").is_err());
    assert!(parse_shared_subscription("$share/g\0/a").is_err());
}

#[test]
fn the_filter_of_a_shared_subscription_is_validated() {
    assert_eq!(
        share_error("$share/g/a/#/b"),
        "in shared subscription '$share/g/a/#/b': '#' must be the last level of a \
         topic filter (level 2 of 'a/#/b')"
    );
    // The limits apply to the filter, not to the `$share/<group>/` in front of it.
    assert!(parse_shared_subscription("$share/g/a/b/c/d/e/f/g/h").is_ok());
    assert!(parse_shared_subscription("$share/g/$share/h/a").is_err());
}

// ---- templates ----

#[test]
fn a_template_without_variables_expands_to_its_own_filter() {
    let t = template("devices/+/telemetry/#");
    assert!(!t.has_variables());
    assert_eq!(t.as_str(), "devices/+/telemetry/#");
    assert_eq!(
        expand("devices/+/telemetry/#", "d1", &Attributes::new()).as_deref(),
        Some("devices/+/telemetry/#")
    );
}

#[test]
fn authentication_name_fills_its_level() {
    assert_eq!(
        expand(
            "devices/${client.authenticationName}/telemetry",
            "d1",
            &Attributes::new()
        )
        .as_deref(),
        Some("devices/d1/telemetry")
    );
}

#[test]
fn a_template_may_start_with_a_variable() {
    assert_eq!(
        expand("${client.authenticationName}/#", "d1", &Attributes::new()).as_deref(),
        Some("d1/#")
    );
}

#[test]
fn string_and_integer_attributes_fill_their_levels() {
    let attrs = attributes(&[
        ("area", AttributeValue::String("north".into())),
        ("floor", AttributeValue::Integer(-3)),
    ]);
    assert_eq!(
        expand(
            "areas/${client.attributes.area}/floors/${client.attributes.floor}/+",
            "d1",
            &attrs
        )
        .as_deref(),
        Some("areas/north/floors/-3/+")
    );
}

#[test]
fn a_string_array_attribute_yields_nothing() {
    let attrs = attributes(&[(
        "area",
        AttributeValue::StringArray(vec!["north".into(), "south".into()]),
    )]);
    assert_eq!(
        expand("areas/${client.attributes.area}", "d1", &attrs),
        None
    );
}

#[test]
fn a_missing_attribute_yields_nothing() {
    assert_eq!(
        expand("areas/${client.attributes.area}", "d1", &Attributes::new()),
        None
    );
}

#[test]
fn attribute_names_are_case_sensitive() {
    let attrs = attributes(&[("Area", AttributeValue::String("north".into()))]);
    assert_eq!(
        expand("areas/${client.attributes.area}", "d1", &attrs),
        None
    );
}

#[test]
fn a_value_that_is_not_a_single_level_yields_nothing() {
    for value in ["", "a/b", "/", "+", "#", "a+", "b#", "a\0"] {
        assert_eq!(
            expand(
                "devices/${client.authenticationName}",
                value,
                &Attributes::new()
            ),
            None,
            "{value:?}"
        );
    }
}

#[test]
fn a_value_starting_with_dollar_yields_nothing_only_in_the_first_level() {
    assert_eq!(
        expand("${client.authenticationName}/a", "$SYS", &Attributes::new()),
        None
    );
    assert_eq!(
        expand("a/${client.authenticationName}", "$x", &Attributes::new()).as_deref(),
        Some("a/$x")
    );
}

#[test]
fn an_expansion_past_256_bytes_yields_nothing() {
    let prefix = "a".repeat(250);
    let text = format!("{prefix}/${{client.authenticationName}}");
    assert!(expand(&text, "12345", &Attributes::new()).is_some());
    assert_eq!(expand(&text, "123456", &Attributes::new()), None);
}

#[test]
fn a_template_may_use_several_variables_and_repeat_one() {
    let attrs = attributes(&[("site", AttributeValue::String("s1".into()))]);
    assert_eq!(
        expand(
            "${client.attributes.site}/${client.authenticationName}/${client.authenticationName}",
            "d1",
            &attrs
        )
        .as_deref(),
        Some("s1/d1/d1")
    );
}

#[test]
fn attribute_names_lists_each_attribute_once_in_order_of_appearance() {
    let t = template(
        "${client.attributes.b}/${client.authenticationName}/${client.attributes.a}/\
         ${client.attributes.b}",
    );
    assert!(t.has_variables());
    assert_eq!(t.attribute_names(), vec!["b", "a"]);
    assert!(
        template("${client.authenticationName}")
            .attribute_names()
            .is_empty()
    );
}

#[test]
fn a_variable_must_fill_a_whole_level() {
    assert_eq!(
        template_error("a/b/x${client.authenticationName}"),
        "a variable must fill a whole level (level 3 is 'x${client.authenticationName}')"
    );
    assert_eq!(
        template_error("devices/a${client.authenticationName}"),
        "a variable must fill a whole level (level 2 is 'a${client.authenticationName}')"
    );
    assert_eq!(
        template_error("${client.authenticationName}x"),
        "a variable must fill a whole level (level 1 is '${client.authenticationName}x')"
    );
    assert_eq!(
        template_error("a/${client.attributes.x}${client.attributes.y}"),
        "a variable must fill a whole level \
         (level 2 is '${client.attributes.x}${client.attributes.y}')"
    );
}

#[test]
fn unknown_variables_are_rejected_with_the_allowed_ones() {
    assert_eq!(
        template_error("a/${client.name}"),
        "unknown variable '${client.name}' in level 2; use ${client.authenticationName} \
         or ${client.attributes.<name>}"
    );
    // Variable names are case-sensitive, and the old preview syntax is not accepted.
    assert!(TopicTemplate::parse("${client.authenticationname}").is_err());
    assert!(TopicTemplate::parse("a/${principal.name}").is_err());
    assert!(TopicTemplate::parse("a/${client.authenticationName|.factory1}").is_err());
}

#[test]
fn an_attribute_variable_must_name_an_attribute() {
    assert_eq!(
        template_error("a/${client.attributes.}"),
        "the variable '${client.attributes.}' in level 2 names no attribute; \
         write ${client.attributes.<name>}"
    );
}

#[test]
fn an_unclosed_variable_is_rejected() {
    assert_eq!(
        template_error("a/${client.authenticationName"),
        "the variable in level 2 is not closed: '${client.authenticationName' needs a '}'"
    );
}

#[test]
fn a_template_cannot_start_with_dollar() {
    assert_eq!(
        template_error("$SYS/#"),
        "topic template '$SYS/#' starts with '$'; Event Grid reserves topics that start \
         with '$' for its own use"
    );
    assert!(TopicTemplate::parse("a/$b").is_ok());
}

#[test]
fn a_template_cannot_be_a_shared_subscription() {
    assert_eq!(
        template_error("$share/g/a"),
        "topic template '$share/g/a' starts with '$share'; a shared subscription is \
         authorized by the filter after its group, so write the template without \
         '$share/<group>/'"
    );
}

#[test]
fn templates_follow_the_wildcard_rules_of_filters() {
    assert_eq!(
        template_error("a/#/${client.authenticationName}"),
        "'#' must be the last level of a topic template (level 2 of \
         'a/#/${client.authenticationName}')"
    );
    assert_eq!(
        template_error("a+/${client.authenticationName}"),
        "'+' must fill a whole level of a topic template (level 1 is 'a+')"
    );
    assert!(TopicTemplate::parse("+/${client.authenticationName}/#").is_ok());
}

#[test]
fn templates_may_have_at_most_8_levels() {
    assert!(TopicTemplate::parse("a/b/c/d/e/f/${client.authenticationName}/#").is_ok());
    assert_eq!(
        template_error("a/b/c/d/e/f/g/${client.authenticationName}/#"),
        "topic template has 9 levels; Event Grid allows at most 8"
    );
}

#[test]
fn a_template_is_measured_by_its_shortest_expansion() {
    // The variable's own text is long, but a short value fits.
    let long_name = "n".repeat(300);
    assert!(TopicTemplate::parse(&format!("a/${{client.attributes.{long_name}}}")).is_ok());
    assert_eq!(
        template_error(&format!(
            "{}/${{client.authenticationName}}",
            "a".repeat(255)
        )),
        "topic template can never fit Event Grid's limit of 256 bytes: even with \
         one-character values its topic filter would be 257 bytes long"
    );
}

#[test]
fn empty_templates_and_nul_characters_are_rejected() {
    assert_eq!(template_error(""), "a topic template must not be empty");
    assert!(TopicTemplate::parse("a/\0").is_err());
}

// ---- properties ----

/// An independent matcher: MQTT matching as a regular expression, plus the `$` rule.
fn reference_matches(filter: &str, topic: &str) -> bool {
    let mut pattern = String::from("(?s)^");
    for (index, level) in filter.split('/').enumerate() {
        match level {
            "#" if index == 0 => pattern.push_str(".*"),
            // The separator is optional so that the parent level matches too.
            "#" => pattern.push_str("(?:/.*)?"),
            "+" => {
                if index > 0 {
                    pattern.push('/');
                }
                pattern.push_str("[^/]*");
            }
            literal => {
                if index > 0 {
                    pattern.push('/');
                }
                pattern.push_str(&regex::escape(literal));
            }
        }
    }
    pattern.push('$');
    let regex = Regex::new(&pattern).expect("reference pattern compiles");
    let dollar_excluded = topic.starts_with('$') && filter.starts_with(['+', '#']);
    regex.is_match(topic) && !dollar_excluded
}

// A handful of levels, so that generated filters and topics match each other often; `$s`
// exercises the `$` rule when it lands in the first level.
const TOPIC_LEVELS: [&str; 4] = ["a", "b", "", "$s"];
// A level no generated filter names, standing for "any other value".
const FRESH_LEVEL: &str = "f";
const MAX_GENERATED_FILTER_LEVELS: usize = 4;

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOPIC_LEVELS.to_vec()), 1..=5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topic names are not empty", |topic| !topic.is_empty())
}

fn filter_strategy() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "$s", "+"]);
    (
        prop::collection::vec(level, 0..MAX_GENERATED_FILTER_LEVELS),
        any::<bool>(),
    )
        .prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("filters are not empty", |text| !text.is_empty())
}

/// Every valid topic of up to `max_levels` levels drawn from the generated alphabet plus
/// the fresh level.
fn all_topics(max_levels: usize) -> Vec<String> {
    let alphabet: Vec<&str> = TOPIC_LEVELS.iter().copied().chain([FRESH_LEVEL]).collect();
    let mut topics: Vec<String> = Vec::new();
    let mut previous: Vec<String> = vec![String::new()];
    for depth in 1..=max_levels {
        let mut current = Vec::new();
        for prefix in &previous {
            for level in &alphabet {
                current.push(if depth == 1 {
                    (*level).to_owned()
                } else {
                    format!("{prefix}/{level}")
                });
            }
        }
        topics.extend(current.iter().cloned());
        previous = current;
    }
    topics.retain(|topic| validate_topic_name(topic).is_ok());
    topics
}

/// A value for a variable: valid levels that generated topics also use, and values that
/// are not a single level.
fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a", "b", "$s", "v", "", "x/y", "/", "+", "#", "v+", "$share"
        ])
        .prop_map(str::to_owned),
        "[av$/+#\\x00]{0,3}",
    ]
}

fn template_text_strategy(variable: &'static str) -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "v", "", "$s", "+", variable]);
    (prop::collection::vec(level, 1..=4), any::<bool>()).prop_map(|(mut levels, hash)| {
        if hash {
            levels.push("#");
        }
        levels.join("/")
    })
}

fn variable_value_strategy() -> impl Strategy<Value = Option<AttributeValue>> {
    prop_oneof![
        value_strategy().prop_map(|value| Some(AttributeValue::String(value))),
        (-3i64..30).prop_map(|value| Some(AttributeValue::Integer(value))),
        prop::collection::vec(value_strategy(), 0..3)
            .prop_map(|values| Some(AttributeValue::StringArray(values))),
        Just(None),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_agrees_with_a_regex_reference(text in filter_strategy(), topic in topic_strategy()) {
        let parsed = TopicFilter::parse(&text);
        prop_assert!(parsed.is_ok(), "{text}: {parsed:?}");
        if let Ok(f) = parsed {
            prop_assert_eq!(f.matches(&topic), reference_matches(&text, &topic), "{} vs {}", text, topic);
        }
    }

    #[test]
    fn a_topic_name_used_as_a_filter_matches_exactly_itself(
        topic in topic_strategy(),
        other in topic_strategy(),
    ) {
        let f = TopicFilter::parse(&topic);
        prop_assert!(f.is_ok());
        if let Ok(f) = f {
            prop_assert!(f.matches(&topic));
            prop_assert_eq!(f.matches(&other), topic == other);
        }
    }

    #[test]
    fn covering_filters_match_everything_the_covered_filter_matches(
        a in filter_strategy(),
        b in filter_strategy(),
        topic in topic_strategy(),
    ) {
        let (a, b) = (filter(&a), filter(&b));
        if a.covers(&b) && b.matches(&topic) {
            prop_assert!(a.matches(&topic), "{} covers {} but misses {}", a, b, topic);
        }
    }

    #[test]
    fn covers_agrees_with_brute_force_enumeration(a in filter_strategy(), b in filter_strategy()) {
        // A topic that `b` matches and `a` does not can always be built from `b` by putting
        // the fresh level in place of each `+`, and nothing or fresh levels in place of `#`,
        // and it never needs more levels than the longer filter has plus one: so this
        // finite enumeration decides coverage exactly for the generated filters.
        thread_local! {
            static TOPICS: Vec<String> = all_topics(MAX_GENERATED_FILTER_LEVELS + 1);
        }
        let (fa, fb) = (filter(&a), filter(&b));
        let brute_force = TOPICS.with(|topics| {
            topics.iter().all(|topic| !fb.matches(topic) || fa.matches(topic))
        });
        prop_assert_eq!(fa.covers(&fb), brute_force, "{} covers {}?", a, b);
    }

    #[test]
    fn expansion_equals_textual_substitution(
        use_attribute in any::<bool>(),
        authentication_name in value_strategy(),
        attribute in variable_value_strategy(),
        topic in topic_strategy(),
        seed_text in template_text_strategy("${VAR}"),
    ) {
        let variable = if use_attribute {
            "${client.attributes.site}"
        } else {
            "${client.authenticationName}"
        };
        let text = seed_text.replace("${VAR}", variable);
        let Ok(parsed) = TopicTemplate::parse(&text) else {
            // Only a leading literal `$s`, or nothing at all, is invalid in this alphabet.
            prop_assert!(text.is_empty() || text.starts_with("$s"), "{}", text);
            return Ok(());
        };
        let attributes: Attributes = attribute
            .clone()
            .map(|value| ("site".to_string(), value))
            .into_iter()
            .collect();
        let client = ClientIdentity { authentication_name: &authentication_name, attributes: &attributes };
        let expanded = parsed.expand(&client);

        let value = if use_attribute {
            match &attribute {
                Some(AttributeValue::String(value)) => Some(value.clone()),
                Some(AttributeValue::Integer(value)) => Some(value.to_string()),
                Some(AttributeValue::StringArray(_)) | None => None,
            }
        } else {
            Some(authentication_name.clone())
        };
        // Written from the rules, not from the implementation: a value must be one
        // non-empty level without wildcards or NUL, and the filter must not start with `$`.
        let reference_text = if parsed.has_variables() {
            value
                .as_deref()
                .filter(|value| !value.is_empty() && !value.contains(['/', '+', '#', '\0']))
                .map(|value| text.replace(variable, value))
                .filter(|textual| !textual.starts_with('$'))
        } else {
            Some(text.clone())
        };

        match reference_text {
            Some(reference_text) => {
                let reference = filter(&reference_text);
                prop_assert_eq!(
                    expanded.as_ref().map(|f| f.matches(&topic)),
                    Some(reference.matches(&topic)),
                    "{} with {:?}", text, value
                );
                prop_assert_eq!(expanded.as_ref().map(TopicFilter::as_str), Some(reference_text.as_str()));
            }
            None => prop_assert_eq!(expanded, None, "{} with {:?}", text, value),
        }
    }

    #[test]
    fn expansion_never_yields_an_invalid_filter(
        text in template_text_strategy("${client.authenticationName}"),
        name in "\\PC{0,6}|[a/+#$\\x00]{0,4}",
    ) {
        let Ok(parsed) = TopicTemplate::parse(&text) else { return Ok(()); };
        let attributes = Attributes::new();
        let client = ClientIdentity { authentication_name: &name, attributes: &attributes };
        if let Some(expanded) = parsed.expand(&client) {
            prop_assert_eq!(TopicFilter::parse(expanded.as_str()), Ok(expanded.clone()));
            prop_assert!(!expanded.as_str().starts_with('$'));
            prop_assert_eq!(
                expanded.as_str().split('/').count(),
                text.split('/').count(),
                "a value may not add levels"
            );
        }
    }

    #[test]
    fn parsing_never_panics_and_keeps_the_text(
        text in prop_oneof![
            any::<String>(),
            "[ab$/+#{}.\\x00]{0,12}",
            "(a|/|\\+|#|\\$|\\$\\{|\\}|client\\.|authenticationName|attributes\\.|\\$share){0,8}",
        ],
    ) {
        if let Ok(f) = TopicFilter::parse(&text) {
            prop_assert_eq!(f.as_str(), text.as_str());
        }
        if let Ok(t) = TopicTemplate::parse(&text) {
            prop_assert_eq!(t.as_str(), text.as_str());
            let _ = t.attribute_names();
        }
        if validate_topic_name(&text).is_ok() {
            // A valid name is a valid filter naming just itself (unless it is `$share`).
            if let Ok(f) = TopicFilter::parse(&text) {
                prop_assert!(f.matches(&text));
            }
        }
        if let Ok(Some(shared)) = parse_shared_subscription(&text) {
            prop_assert!(TopicFilter::parse(shared.filter).is_ok());
            prop_assert!(!shared.group.is_empty());
        }
    }
}

#[test]
fn a_hash_after_one_empty_level_has_no_parent_topic_to_match() {
    // `/#` would match its parent, the empty string, which is not a topic name; so it
    // matches exactly what `/+/#` matches.
    let plus_hash = TopicFilter::parse("/+/#").unwrap();
    let hash = TopicFilter::parse("/#").unwrap();
    assert!(plus_hash.covers(&hash));
    assert!(hash.covers(&plus_hash));
    assert!(
        !TopicFilter::parse("a/+/#")
            .unwrap()
            .covers(&TopicFilter::parse("a/#").unwrap())
    );
}

use super::*;
use proptest::prelude::*;

fn client(pairs: &[(&str, AttributeValue)]) -> Attributes {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

fn int(number: i64) -> AttributeValue {
    AttributeValue::Integer(number)
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::String(value.to_string())
}

fn strings(values: &[&str]) -> AttributeValue {
    AttributeValue::StringArray(values.iter().map(|value| value.to_string()).collect())
}

/// The client most tests ask about: a string, an integer and a string array.
fn sensor() -> Attributes {
    client(&[
        ("type", text("home-sensors")),
        ("floor", int(3)),
        ("sensors", strings(&["motion", "noise", "light"])),
    ])
}

#[track_caller]
fn query(text: &str) -> ClientGroupQuery {
    ClientGroupQuery::parse(text).unwrap_or_else(|err| panic!("{text:?} should parse: {err}"))
}

#[track_caller]
fn selects(text: &str, attributes: &Attributes) -> bool {
    query(text).matches(attributes)
}

#[track_caller]
fn sensor_selected_by(text: &str) -> bool {
    selects(text, &sensor())
}

#[track_caller]
fn rejects(text: &str, position: usize, message: &str) {
    let err = ClientGroupQuery::parse(text).expect_err(text);
    assert_eq!(
        (err.position, err.message.as_str()),
        (position, message),
        "{text:?}"
    );
}

// --- comparisons -----------------------------------------------------------------------

#[test]
fn equals_matches_a_string_attribute_with_exactly_that_value() {
    assert!(sensor_selected_by("attributes.type = 'home-sensors'"));
    assert!(!sensor_selected_by("attributes.type = 'vehicle'"));
}

#[test]
fn string_values_compare_case_sensitively() {
    assert!(!sensor_selected_by("attributes.type = 'Home-Sensors'"));
}

#[test]
fn equals_matches_an_integer_attribute_with_the_same_number() {
    assert!(sensor_selected_by("attributes.floor = 3"));
    assert!(!sensor_selected_by("attributes.floor = 4"));
}

#[test]
fn not_equal_in_either_spelling_matches_a_present_attribute_with_another_value() {
    for op in ["<>", "!="] {
        assert!(sensor_selected_by(&format!(
            "attributes.type {op} 'vehicle'"
        )));
        assert!(!sensor_selected_by(&format!(
            "attributes.type {op} 'home-sensors'"
        )));
        assert!(sensor_selected_by(&format!("attributes.floor {op} 4")));
        assert!(!sensor_selected_by(&format!("attributes.floor {op} 3")));
    }
    assert_eq!(query("attributes.a != 1"), query("attributes.a <> 1"));
}

#[test]
fn less_than_matches_only_smaller_integers() {
    assert!(sensor_selected_by("attributes.floor < 4"));
    assert!(!sensor_selected_by("attributes.floor < 3"));
}

#[test]
fn less_or_equal_matches_smaller_and_equal_integers() {
    assert!(sensor_selected_by("attributes.floor <= 3"));
    assert!(!sensor_selected_by("attributes.floor <= 2"));
}

#[test]
fn greater_than_matches_only_larger_integers() {
    assert!(sensor_selected_by("attributes.floor > 2"));
    assert!(!sensor_selected_by("attributes.floor > 3"));
}

#[test]
fn greater_or_equal_matches_larger_and_equal_integers() {
    assert!(sensor_selected_by("attributes.floor >= 3"));
    assert!(!sensor_selected_by("attributes.floor >= 4"));
}

#[test]
fn integers_compare_as_signed_64_bit_numbers() {
    let basement = client(&[("floor", int(-2))]);
    assert!(selects("attributes.floor < -1", &basement));
    assert!(selects(
        "attributes.floor > -9223372036854775808",
        &basement
    ));
    assert!(!selects("attributes.floor >= 0", &basement));
}

#[test]
fn an_integer_attribute_never_equals_a_string_value_nor_the_reverse() {
    let numeric = client(&[("floor", int(5))]);
    let textual = client(&[("floor", text("5"))]);
    for op in ["=", "<>"] {
        assert!(!selects(&format!("attributes.floor {op} '5'"), &numeric));
        assert!(!selects(&format!("attributes.floor {op} 5"), &textual));
    }
    assert!(!selects("attributes.floor < 10", &textual));
}

#[test]
fn equals_matches_a_string_array_attribute_that_contains_the_value() {
    assert!(sensor_selected_by("attributes.sensors = 'noise'"));
    assert!(!sensor_selected_by("attributes.sensors = 'humidity'"));
}

#[test]
fn not_equal_matches_a_string_array_attribute_without_the_value() {
    assert!(sensor_selected_by("attributes.sensors <> 'humidity'"));
    assert!(!sensor_selected_by("attributes.sensors <> 'noise'"));
}

#[test]
fn relational_operators_never_match_a_string_array() {
    assert!(!sensor_selected_by("attributes.sensors < 5"));
    assert!(sensor_selected_by("NOT attributes.sensors >= 5"));
}

#[test]
fn in_list_matches_any_element_of_a_string_array_attribute() {
    assert!(sensor_selected_by(
        "attributes.sensors IN ['humidity', 'light']"
    ));
    assert!(!sensor_selected_by(
        "attributes.sensors IN ['humidity', 'smoke']"
    ));
    let bare = client(&[("sensors", strings(&[]))]);
    assert!(!selects("attributes.sensors IN ['motion']", &bare));
}

#[test]
fn in_list_matches_a_string_attribute_equal_to_one_of_the_values() {
    assert!(sensor_selected_by(
        "attributes.type IN ['vehicle', 'home-sensors']"
    ));
    assert!(!sensor_selected_by(
        "attributes.type IN ['vehicle', 'thermostat']"
    ));
}

#[test]
fn in_list_matches_an_integer_attribute_equal_to_one_of_the_values() {
    assert!(sensor_selected_by("attributes.floor IN [1, 3, 5]"));
    assert!(!sensor_selected_by("attributes.floor IN [1, 5]"));
}

#[test]
fn in_list_elements_of_the_other_type_never_match() {
    assert!(!sensor_selected_by("attributes.floor IN ['3']"));
    assert!(sensor_selected_by("attributes.floor IN ['3', 3]"));
}

#[test]
fn single_and_double_quotes_write_the_same_string() {
    assert_eq!(
        query(r#"attributes.a = "x y""#),
        query("attributes.a = 'x y'")
    );
}

#[test]
fn a_doubled_quote_inside_a_string_stands_for_one_quote() {
    let owner = client(&[("owner", text(r#"o'brien "jr""#))]);
    assert!(selects(r#"attributes.owner = 'o''brien "jr"'"#, &owner));
    assert!(selects(r#"attributes.owner = "o'brien ""jr""""#, &owner));
}

// --- missing attributes ----------------------------------------------------------------

#[test]
fn a_comparison_on_a_missing_attribute_never_matches() {
    for op in ["= 'x'", "<> 'x'", "< 1", ">= 1", "IN ['x', 1]"] {
        assert!(
            !selects(&format!("attributes.a {op}"), &Attributes::new()),
            "{op}"
        );
    }
}

#[test]
fn not_of_a_comparison_on_a_missing_attribute_matches() {
    assert!(selects("NOT attributes.banned = 1", &Attributes::new()));
}

// --- boolean structure -----------------------------------------------------------------

#[test]
fn and_requires_both_sides_and_or_either_side() {
    assert!(sensor_selected_by(
        "attributes.floor = 3 AND attributes.type = 'home-sensors'"
    ));
    assert!(!sensor_selected_by(
        "attributes.floor = 3 AND attributes.type = 'vehicle'"
    ));
    assert!(sensor_selected_by(
        "attributes.floor = 9 OR attributes.type = 'home-sensors'"
    ));
    assert!(!sensor_selected_by(
        "attributes.floor = 9 OR attributes.type = 'vehicle'"
    ));
}

#[test]
fn not_inverts_what_follows_it() {
    assert!(sensor_selected_by("NOT attributes.floor = 9"));
    assert!(!sensor_selected_by("NOT attributes.floor = 3"));
    assert!(sensor_selected_by("NOT NOT attributes.floor = 3"));
}

#[test]
fn and_binds_tighter_than_or() {
    // `true OR (false AND false)`; read as `(true OR false) AND false` it would not match.
    assert!(sensor_selected_by(
        "attributes.floor = 3 OR attributes.floor = 9 AND attributes.floor = 8"
    ));
}

#[test]
fn not_binds_tighter_than_and() {
    // `(NOT false) AND false`; read as `NOT (false AND false)` it would match.
    assert!(!sensor_selected_by(
        "NOT attributes.floor = 9 AND attributes.floor = 8"
    ));
}

#[test]
fn parentheses_override_precedence() {
    assert!(!sensor_selected_by(
        "(attributes.floor = 3 OR attributes.floor = 9) AND attributes.floor = 8"
    ));
    assert!(sensor_selected_by(
        "NOT (attributes.floor = 9 AND attributes.floor = 8)"
    ));
}

#[test]
fn keywords_are_case_insensitive() {
    assert_eq!(
        query("not attributes.a = 1 and attributes.b in [1] Or attributes.c = 2"),
        query("NOT attributes.a = 1 AND attributes.b IN [1] OR attributes.c = 2")
    );
}

#[test]
fn attribute_names_and_the_attributes_prefix_are_case_insensitive() {
    assert_eq!(query("Attributes.Floor = 3"), query("attributes.floor = 3"));
    assert!(selects(
        "attributes.floor = 7",
        &client(&[("FLOOR", int(7))])
    ));
}

#[test]
fn whitespace_is_optional_around_operators_and_brackets() {
    assert_eq!(
        query("(attributes.a<>'x')AND attributes.b IN[1,2]"),
        query("( attributes.a <> 'x' ) AND attributes.b IN [ 1 , 2 ]")
    );
}

#[test]
fn the_sample_queries_from_the_event_grid_docs_work() {
    let (mut attributes, b) = (sensor(), client(&[("b", text("c"))]));
    let first = r#"(attributes.sensors = "motion" or attributes.sensors = "humidity") or attributes.type = "home-sensors""#;
    let second =
        r#"attributes.sensors IN ["motion", "humidity", "temperature"] and attributes.floor <= 5"#;
    assert!(selects(first, &attributes) && selects(second, &attributes));
    attributes.insert("floor".into(), int(6));
    assert!(!selects(second, &attributes));
    assert!(selects("attributes.b IN ['a', 'b', 'c']", &b));
}

#[test]
fn authentication_name_selects_clients_by_their_exact_authentication_name() {
    let group = query("authenticationName IN ['client1', 'client2']");
    assert!(group.matches_client("client2", &Attributes::new()));
    assert!(!group.matches_client("client3", &Attributes::new()));
    assert!(!group.matches_client("Client2", &Attributes::new()));
    assert_eq!(group, query("AUTHENTICATIONNAME IN ['client1', 'client2']"));
}

#[test]
fn matches_without_an_authentication_name_treats_it_as_missing() {
    assert!(!selects(
        "authenticationName = 'client1'",
        &Attributes::new()
    ));
    assert!(selects(
        "NOT authenticationName = 'client1'",
        &Attributes::new()
    ));
}

// --- $all and introspection ------------------------------------------------------------

#[test]
fn all_matches_every_client_even_one_without_attributes() {
    let all = query("$all");
    assert!(all.is_all() && !query("attributes.a = 1").is_all());
    assert!(all.matches(&Attributes::new()) && all.matches(&sensor()));
    assert!(all.matches_client("anyone", &Attributes::new()));
    assert_eq!(query("  $ALL "), all);
}

#[test]
fn all_cannot_be_combined_with_conditions() {
    rejects(
        "$all OR attributes.a = 1",
        1,
        "'$all' must be the whole query",
    );
}

#[test]
fn attribute_names_lists_each_attribute_once_lower_cased_and_sorted() {
    let group = query(
        "attributes.Zone = 1 AND (NOT attributes.b IN ['x'] OR attributes.ZONE <> 2) \
         AND authenticationName = 'c'",
    );
    assert_eq!(group.attribute_names(), ["b", "zone"]);
    assert!(query("$all").attribute_names().is_empty());
}

// --- rendering -------------------------------------------------------------------------

#[test]
fn display_renders_a_canonical_form() {
    let group = r#"attributes.A != "x" or not (attributes.b in ['p',"q"] and attributes.c>=3)"#;
    let canonical = "attributes.a <> 'x' OR NOT (attributes.b IN ['p', 'q'] AND attributes.c >= 3)";
    assert_eq!(query(group).to_string(), canonical);
    assert_eq!(query("$all").to_string(), "$all");
}

#[test]
fn display_keeps_only_the_parentheses_that_change_the_grouping() {
    let group =
        "((attributes.a = 1 OR attributes.b = 2)) OR (attributes.c = 3 AND attributes.d = 4)";
    let canonical =
        "(attributes.a = 1 OR attributes.b = 2) OR attributes.c = 3 AND attributes.d = 4";
    assert_eq!(query(group).to_string(), canonical);
}

#[test]
fn display_doubles_single_quotes_inside_strings() {
    assert_eq!(
        query(r#"attributes.a = "it's""#).to_string(),
        "attributes.a = 'it''s'"
    );
}

// --- errors ----------------------------------------------------------------------------

#[test]
fn error_display_appends_the_position() {
    let err = ClientGroupQuery::parse("attributes.a == 1").expect_err("rejected");
    assert_eq!(err.to_string(), "unknown operator '==' (at character 14)");
}

#[test]
fn a_missing_value_is_reported_after_its_operator() {
    rejects(
        "attributes.a =",
        15,
        "expected a value after '=' but found end of query",
    );
    let unquoted = "expected a value after '!=' but found 'on' (string values must be quoted)";
    rejects("attributes.a != on", 17, unquoted);
}

#[test]
fn unknown_operators_are_named() {
    rejects("attributes.a == 1", 14, "unknown operator '=='");
    rejects("attributes.a => 1", 14, "unknown operator '=>'");
}

#[test]
fn references_must_start_with_attributes() {
    let message = "attribute references must start with 'attributes.'";
    rejects("foo = 1", 1, &format!("{message} (found 'foo')"));
    rejects(
        "attributes.a = 1 OR attribute.a = 2",
        21,
        &format!("{message} (found 'attribute.a')"),
    );
}

#[test]
fn attribute_names_must_be_present_and_use_letters_digits_and_underscores() {
    rejects(
        "attributes. = 1",
        12,
        "missing attribute name after 'attributes.'",
    );
    let message = "attribute names may contain only letters, digits and '_' (found 'a.b')";
    rejects("attributes.a.b = 1", 12, message);
}

#[test]
fn an_unterminated_string_names_where_it_started() {
    rejects(
        "attributes.a IN ['x",
        20,
        "unterminated string starting at character 18",
    );
}

#[test]
fn an_in_list_must_be_bracketed_non_empty_and_comma_separated() {
    rejects("attributes.a IN []", 17, "empty IN list");
    let parens = "expected '[' after IN but found '(' (IN lists are written in square brackets)";
    rejects("attributes.a IN ('x')", 17, parens);
    rejects(
        "attributes.a IN ['x',]",
        22,
        "expected a value in the IN list but found ']'",
    );
    let missing_comma = "expected ',' or ']' in the IN list but found string 'y'";
    rejects("attributes.a IN ['x' 'y']", 22, missing_comma);
}

#[test]
fn relational_operators_reject_string_values() {
    rejects(
        "attributes.a <= 'b'",
        17,
        "'<=' compares integers only (found string 'b')",
    );
}

#[test]
fn parentheses_must_balance() {
    let unclosed = "expected ')' to close the '(' at character 1 but found end of query";
    rejects("(attributes.a = 1", 18, unclosed);
    rejects("attributes.a = 1)", 17, "unmatched ')'");
}

#[test]
fn a_comparison_needs_an_operator_after_its_reference() {
    let message = "expected an operator after 'attributes.a' but found";
    rejects("attributes.a 'x'", 14, &format!("{message} string 'x'"));
    let not_in = format!("{message} 'NOT' (NOT goes before the whole comparison)");
    rejects("attributes.a NOT IN ['x']", 14, &not_in);
}

#[test]
fn and_or_and_not_need_a_comparison_to_work_on() {
    rejects(
        "attributes.a = 1 AND",
        21,
        "expected a comparison but found end of query",
    );
    rejects("NOT", 4, "expected a comparison but found end of query");
    rejects(
        "OR attributes.a = 1",
        1,
        "expected a comparison but found 'OR'",
    );
}

#[test]
fn comparisons_must_be_joined_by_and_or_or() {
    let message = "expected AND or OR but found 'attributes.b'";
    rejects("attributes.a = 1 attributes.b = 2", 18, message);
}

#[test]
fn an_empty_query_is_rejected() {
    rejects("", 1, "empty query");
    rejects("   ", 4, "empty query");
}

#[test]
fn numbers_must_be_64_bit_integers() {
    let overflow = "integer '9223372036854775808' does not fit in 64 bits";
    rejects("attributes.a = 9223372036854775808", 16, overflow);
    let decimal = "'5.5' is not a number: values are quoted strings or whole numbers";
    rejects("attributes.a = 5.5", 16, decimal);
}

#[test]
fn stray_characters_are_rejected() {
    rejects("attributes.a = 1 # x", 18, "unexpected character '#'");
}

#[test]
fn positions_count_characters_not_bytes() {
    let message = "attribute references must start with 'attributes.' (found 'foo')";
    rejects("attributes.a = 'éé' OR foo = 1", 24, message);
}

#[test]
fn nesting_deeper_than_the_limit_is_rejected() {
    let at_limit = format!("{}attributes.a = 1{}", "(".repeat(32), ")".repeat(32));
    assert!(ClientGroupQuery::parse(&at_limit).is_ok());
    let too_deep = format!("{}attributes.a = 1", "NOT ".repeat(33));
    rejects(
        &too_deep,
        129,
        "query nests parentheses and NOT more than 32 deep",
    );
}

// --- properties ------------------------------------------------------------------------

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        4 => "[a-z0-9_]{1,8}".prop_map(Operand::Attribute),
        1 => Just(Operand::AuthenticationName),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<String>().prop_map(Value::String),
        "[a-z'\" ]{0,6}".prop_map(Value::String),
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    let equality = prop_oneof![Just(CompareOp::Eq), Just(CompareOp::Ne)];
    let relational = prop::sample::select(&CompareOp::ALL[2..]);
    let leaf = prop_oneof![
        (operand(), equality, value()).prop_map(|(operand, op, value)| Condition::Compare {
            operand,
            op,
            value
        }),
        (operand(), relational, any::<i64>()).prop_map(|(operand, op, number)| {
            Condition::Compare {
                operand,
                op,
                value: Value::Integer(number),
            }
        }),
        (operand(), prop::collection::vec(value(), 1..4))
            .prop_map(|(operand, values)| Condition::In { operand, values }),
    ];
    leaf.prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Condition::Or),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Condition::And),
            inner.prop_map(|term| Condition::Not(Box::new(term))),
        ]
    })
}

proptest! {
    #[test]
    fn rendering_a_query_and_parsing_it_back_gives_the_same_query(
        root in prop_oneof![1 => Just(Root::All), 9 => condition().prop_map(Root::Condition)]
    ) {
        let original = ClientGroupQuery { root };
        let rendered = original.to_string();
        prop_assert_eq!(ClientGroupQuery::parse(&rendered), Ok(original), "{}", rendered);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = ClientGroupQuery::parse(&text);
    }

    // Random text rarely parses; a jumble of query fragments in mixed spellings often does,
    // and whatever parses must survive a trip through `Display` unchanged.
    #[test]
    fn query_like_text_never_panics_and_what_parses_round_trips(
        text in prop::collection::vec(
            prop_oneof![
                3 => r#"[aA]ttributes\.[aB] ?(=|<>|!=|<|<=|>|>=) ?-?[0-9]{1,2}"#,
                3 => r#"attributes\.[ab] (=|!=) ('[x']{0,2}'|"y")|attributes\.b IN ?\[('x'|1)(, 2)?\]|authenticationName = 'c'"#,
                4 => r#"NOT|not|AND|and|OR|Or|\(|\)"#,
                1 => r#"\$all|=|\[|'|x|IN|,|\]"#,
            ],
            1..12,
        )
        .prop_map(|parts| parts.join(" "))
    ) {
        if let Ok(parsed) = ClientGroupQuery::parse(&text) {
            prop_assert_eq!(ClientGroupQuery::parse(&parsed.to_string()), Ok(parsed));
        }
    }
}

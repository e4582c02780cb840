use super::*;
use proptest::prelude::*;
use serde_json::json;

// ---- helpers -------------------------------------------------------------------------

fn config(json: Value) -> FiltersConfiguration {
    serde_json::from_value(json).expect("test configuration parses")
}

fn compile(json: Value) -> CompiledFilter {
    CompiledFilter::compile(&config(json)).expect("test configuration compiles")
}

/// Problems for a configuration, as `field: message` lines.
fn problems(json: Value) -> Vec<String> {
    match CompiledFilter::compile(&config(json)) {
        Ok(_) => panic!("expected problems"),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

/// Problems for a configuration holding just one filter.
fn filter_problems(filter: Value) -> Vec<String> {
    problems(json!({ "filters": [filter] }))
}

/// A structured-mode CloudEvent carrying `data`.
fn event(data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "type": "Contoso.Orders.Created",
        "source": "/contoso/orders",
        "id": "A234-1234-1234",
        "time": "2024-04-05T17:31:00Z",
        "subject": "orders/42",
        "datacontenttype": "application/json",
        "data": data
    })
}

/// Whether one filter, arrays off, matches an event with `data`.
fn one(filter: Value, data: Value) -> bool {
    compile(json!({ "filters": [filter] })).matches(&event(data))
}

/// Whether one filter, arrays on, matches an event with `data`.
fn one_on_arrays(filter: Value, data: Value) -> bool {
    compile(json!({ "filters": [filter], "enableAdvancedFilteringOnArrays": true }))
        .matches(&event(data))
}

fn on_x(operator: &str, operands: Value) -> Value {
    let mut filter = json!({ "operatorType": operator, "key": "data.x" });
    if operands.is_array() {
        filter["values"] = operands;
    } else if !operands.is_null() {
        filter["value"] = operands;
    }
    filter
}

// ---- accept_all and includedEventTypes -----------------------------------------------

#[test]
fn accept_all_matches_every_event_even_malformed_ones() {
    let filter = CompiledFilter::accept_all();
    assert!(filter.matches(&event(json!({}))));
    assert!(filter.matches(&json!({})));
    assert!(filter.matches(&json!("not an object")));
}

#[test]
fn empty_configuration_compiles_to_accept_all() {
    let filter = compile(json!({}));
    assert!(filter.matches(&event(json!(null))));
    assert!(filter.matches(&json!({"type": "anything"})));
}

#[test]
fn included_event_types_match_the_type_exactly_ignoring_case() {
    let filter = compile(json!({ "includedEventTypes": ["contoso.orders.CREATED", "Other"] }));
    assert!(filter.matches(&event(json!({}))));
    assert!(filter.matches(&json!({"type": "OTHER"})));
    assert!(!filter.matches(&json!({"type": "Contoso.Orders.Created.V2"})));
    assert!(!filter.matches(&json!({"type": "Contoso.Orders"})));
}

#[test]
fn included_event_types_reject_events_without_a_type() {
    let filter = compile(json!({ "includedEventTypes": ["Contoso.Orders.Created"] }));
    assert!(!filter.matches(&json!({"source": "/x"})));
    assert!(!filter.matches(&json!({"type": 5})));
}

#[test]
fn included_event_type_all_accepts_every_type() {
    let filter = compile(json!({ "includedEventTypes": ["Contoso.Orders.Created", "all"] }));
    assert!(filter.matches(&json!({"type": "Anything.Else"})));
    assert!(filter.matches(&json!({})));
}

#[test]
fn included_event_types_and_advanced_filters_must_both_match() {
    let filter = compile(json!({
        "includedEventTypes": ["Contoso.Orders.Created"],
        "filters": [{"operatorType": "NumberGreaterThan", "key": "data.total", "value": 10}]
    }));
    assert!(filter.matches(&event(json!({"total": 11}))));
    assert!(!filter.matches(&event(json!({"total": 9}))));
    let mut other_type = event(json!({"total": 11}));
    other_type["type"] = json!("Contoso.Orders.Deleted");
    assert!(!filter.matches(&other_type));
}

#[test]
fn all_advanced_filters_must_match() {
    let filter = compile(json!({ "filters": [
        {"operatorType": "StringBeginsWith", "key": "subject", "values": ["orders/"]},
        {"operatorType": "BoolEquals", "key": "data.paid", "value": true}
    ]}));
    assert!(filter.matches(&event(json!({"paid": true}))));
    assert!(!filter.matches(&event(json!({"paid": false}))));
    let mut other_subject = event(json!({"paid": true}));
    other_subject["subject"] = json!("invoices/1");
    assert!(!filter.matches(&other_subject));
}

// ---- number operators ----------------------------------------------------------------

#[test]
fn number_in_matches_a_listed_number() {
    assert!(one(on_x("NumberIn", json!([5, 1])), json!({"x": 1})));
    assert!(one(on_x("NumberIn", json!([5, 1.5])), json!({"x": 1.5})));
}

#[test]
fn number_in_rejects_an_unlisted_number() {
    assert!(!one(on_x("NumberIn", json!([5, 1])), json!({"x": 2})));
}

#[test]
fn number_in_compares_integers_and_floats_by_value() {
    assert!(one(on_x("NumberIn", json!([5])), json!({"x": 5.0})));
    assert!(one(on_x("NumberIn", json!([5.0])), json!({"x": 5})));
}

#[test]
fn number_not_in_matches_an_unlisted_number() {
    assert!(one(on_x("NumberNotIn", json!([41, 0])), json!({"x": 7})));
}

#[test]
fn number_not_in_rejects_a_listed_number() {
    assert!(!one(on_x("NumberNotIn", json!([41, 0])), json!({"x": 0})));
}

#[test]
fn number_less_than_matches_smaller_and_rejects_equal_or_larger() {
    let filter = on_x("NumberLessThan", json!(100));
    assert!(one(filter.clone(), json!({"x": 99.9})));
    assert!(!one(filter.clone(), json!({"x": 100})));
    assert!(!one(filter, json!({"x": 101})));
}

#[test]
fn number_greater_than_matches_larger_and_rejects_equal_or_smaller() {
    let filter = on_x("NumberGreaterThan", json!(20));
    assert!(one(filter.clone(), json!({"x": 21})));
    assert!(!one(filter.clone(), json!({"x": 20})));
    assert!(!one(filter, json!({"x": -3})));
}

#[test]
fn number_less_than_or_equals_matches_equal_and_rejects_larger() {
    let filter = on_x("NumberLessThanOrEquals", json!(100));
    assert!(one(filter.clone(), json!({"x": 100})));
    assert!(one(filter.clone(), json!({"x": -100})));
    assert!(!one(filter, json!({"x": 100.5})));
}

#[test]
fn number_greater_than_or_equals_matches_equal_and_rejects_smaller() {
    let filter = on_x("NumberGreaterThanOrEquals", json!(30));
    assert!(one(filter.clone(), json!({"x": 30})));
    assert!(one(filter.clone(), json!({"x": 1e9})));
    assert!(!one(filter, json!({"x": 29.99})));
}

#[test]
fn number_in_range_matches_inclusive_bounds() {
    let filter = on_x("NumberInRange", json!([[2.5, 999.95], [3000, 4000]]));
    for inside in [
        json!(2.5),
        json!(500),
        json!(999.95),
        json!(3000),
        json!(4000),
    ] {
        assert!(one(filter.clone(), json!({ "x": inside })), "{inside}");
    }
}

#[test]
fn number_in_range_rejects_values_outside_every_range() {
    let filter = on_x("NumberInRange", json!([[2.5, 999.95], [3000, 4000]]));
    for outside in [json!(2.49), json!(1000), json!(2999.5), json!(4000.01)] {
        assert!(!one(filter.clone(), json!({ "x": outside })), "{outside}");
    }
}

#[test]
fn number_not_in_range_matches_values_outside_every_range() {
    let filter = on_x("NumberNotInRange", json!([[1, 2], [10, 20]]));
    assert!(one(filter.clone(), json!({"x": 5})));
    assert!(one(filter, json!({"x": 20.5})));
}

#[test]
fn number_not_in_range_rejects_values_inside_a_range_bounds_included() {
    let filter = on_x("NumberNotInRange", json!([[1, 2], [10, 20]]));
    assert!(!one(filter.clone(), json!({"x": 1})));
    assert!(!one(filter, json!({"x": 20})));
}

#[test]
fn number_operators_read_numeric_strings() {
    assert!(one(on_x("NumberIn", json!([42])), json!({"x": "42"})));
    assert!(one(
        on_x("NumberGreaterThan", json!(1)),
        json!({"x": "1.5e1"})
    ));
    assert!(one(
        on_x("NumberInRange", json!([[0, 1]])),
        json!({"x": "0.5"})
    ));
}

#[test]
fn number_operators_do_not_match_strings_that_are_not_numbers() {
    assert!(!one(
        on_x("NumberIn", json!([42])),
        json!({"x": "forty-two"})
    ));
    assert!(!one(
        on_x("NumberLessThan", json!(1e300)),
        json!({"x": "abc"})
    ));
    // "inf" and "NaN" parse as f64 but are no JSON numbers.
    assert!(!one(
        on_x("NumberGreaterThan", json!(0)),
        json!({"x": "inf"})
    ));
    assert!(!one(on_x("NumberLessThan", json!(0)), json!({"x": "NaN"})));
}

#[test]
fn number_not_operators_match_values_of_another_type() {
    // "Any key values with data types that don't match the filter's data type are
    // ignored": nothing fails the match.
    assert!(one(on_x("NumberNotIn", json!([1])), json!({"x": "abc"})));
    assert!(one(
        on_x("NumberNotInRange", json!([[0, 9]])),
        json!({"x": true})
    ));
}

#[test]
fn number_operators_do_not_match_booleans() {
    assert!(!one(on_x("NumberIn", json!([1])), json!({"x": true})));
    assert!(!one(
        on_x("NumberGreaterThanOrEquals", json!(0)),
        json!({"x": false})
    ));
}

// ---- BoolEquals ------------------------------------------------------------------------

#[test]
fn bool_equals_matches_the_same_boolean() {
    assert!(one(on_x("BoolEquals", json!(true)), json!({"x": true})));
    assert!(one(on_x("BoolEquals", json!(false)), json!({"x": false})));
}

#[test]
fn bool_equals_rejects_the_other_boolean() {
    assert!(!one(on_x("BoolEquals", json!(true)), json!({"x": false})));
    assert!(!one(on_x("BoolEquals", json!(false)), json!({"x": true})));
}

#[test]
fn bool_equals_reads_true_and_false_strings_but_not_numbers() {
    assert!(one(on_x("BoolEquals", json!(true)), json!({"x": "TRUE"})));
    assert!(one(on_x("BoolEquals", json!(false)), json!({"x": "false"})));
    assert!(!one(on_x("BoolEquals", json!(true)), json!({"x": "yes"})));
    assert!(!one(on_x("BoolEquals", json!(true)), json!({"x": 1})));
}

// ---- string operators ------------------------------------------------------------------

#[test]
fn string_in_matches_an_exact_listed_string() {
    assert!(one(
        on_x("StringIn", json!(["contoso", "fabrikam"])),
        json!({"x": "fabrikam"})
    ));
}

#[test]
fn string_in_rejects_partial_matches() {
    let filter = on_x("StringIn", json!(["contoso"]));
    assert!(!one(filter.clone(), json!({"x": "contoso ltd"})));
    assert!(!one(filter, json!({"x": "conto"})));
}

#[test]
fn string_not_in_matches_an_unlisted_string() {
    assert!(one(
        on_x("StringNotIn", json!(["aws", "bridge"])),
        json!({"x": "azure"})
    ));
}

#[test]
fn string_not_in_rejects_a_listed_string() {
    assert!(!one(
        on_x("StringNotIn", json!(["aws", "bridge"])),
        json!({"x": "Bridge"})
    ));
}

#[test]
fn string_begins_with_matches_a_listed_prefix() {
    let filter = on_x("StringBeginsWith", json!(["event", "message"]));
    assert!(one(filter.clone(), json!({"x": "event hubs"})));
    assert!(one(filter, json!({"x": "message"})));
}

#[test]
fn string_begins_with_rejects_other_prefixes() {
    let filter = on_x("StringBeginsWith", json!(["event", "message"]));
    assert!(!one(filter.clone(), json!({"x": "the event"})));
    assert!(!one(filter, json!({"x": "even"})));
}

#[test]
fn string_not_begins_with_matches_when_no_prefix_matches() {
    assert!(one(
        on_x("StringNotBeginsWith", json!(["event"])),
        json!({"x": "service bus"})
    ));
}

#[test]
fn string_not_begins_with_rejects_a_listed_prefix() {
    assert!(!one(
        on_x("StringNotBeginsWith", json!(["x", "event"])),
        json!({"x": "Event hubs"})
    ));
}

#[test]
fn string_ends_with_matches_a_listed_suffix() {
    let filter = on_x("StringEndsWith", json!(["jpg", "jpeg", "png"]));
    assert!(one(filter.clone(), json!({"x": "eventgrid.png"})));
    assert!(one(filter, json!({"x": "jpg"})));
}

#[test]
fn string_ends_with_rejects_other_suffixes() {
    let filter = on_x("StringEndsWith", json!(["jpg", "png"]));
    assert!(!one(filter.clone(), json!({"x": "eventgrid.png.txt"})));
    assert!(!one(filter, json!({"x": "pg"})));
}

#[test]
fn string_not_ends_with_matches_when_no_suffix_matches() {
    assert!(one(
        on_x("StringNotEndsWith", json!(["jpg", "png"])),
        json!({"x": "notes.txt"})
    ));
}

#[test]
fn string_not_ends_with_rejects_a_listed_suffix() {
    assert!(!one(
        on_x("StringNotEndsWith", json!(["jpg", "png"])),
        json!({"x": "cat.PNG"})
    ));
}

#[test]
fn string_contains_matches_a_listed_substring() {
    let filter = on_x("StringContains", json!(["microsoft", "azure"]));
    assert!(one(filter.clone(), json!({"x": "azure data factory"})));
    assert!(one(filter, json!({"x": "the Microsoft way"})));
}

#[test]
fn string_contains_rejects_strings_without_a_listed_substring() {
    assert!(!one(
        on_x("StringContains", json!(["azure"])),
        json!({"x": "azur e"})
    ));
}

#[test]
fn string_not_contains_matches_strings_without_a_listed_substring() {
    assert!(one(
        on_x("StringNotContains", json!(["contoso", "fabrikam"])),
        json!({"x": "northwind"})
    ));
}

#[test]
fn string_not_contains_rejects_strings_with_a_listed_substring() {
    assert!(!one(
        on_x("StringNotContains", json!(["contoso", "fabrikam"])),
        json!({"x": "big FABRIKAM inc"})
    ));
}

#[test]
fn empty_string_value_is_a_prefix_suffix_and_substring_of_everything() {
    assert!(one(
        on_x("StringBeginsWith", json!([""])),
        json!({"x": "abc"})
    ));
    assert!(one(
        on_x("StringEndsWith", json!([""])),
        json!({"x": "abc"})
    ));
    assert!(one(on_x("StringContains", json!([""])), json!({"x": ""})));
    assert!(one(on_x("StringIn", json!([""])), json!({"x": ""})));
    assert!(!one(on_x("StringIn", json!([""])), json!({"x": "a"})));
}

#[test]
fn string_comparisons_ignore_case_in_both_directions() {
    assert!(one(
        on_x("StringIn", json!(["CONTOSO"])),
        json!({"x": "contoso"})
    ));
    assert!(one(
        on_x("StringIn", json!(["contoso"])),
        json!({"x": "CoNtOsO"})
    ));
    assert!(one(
        on_x("StringBeginsWith", json!(["EVENT"])),
        json!({"x": "eventGrid"})
    ));
    assert!(one(
        on_x("StringEndsWith", json!([".JpG"])),
        json!({"x": "CAT.jpg"})
    ));
    assert!(one(
        on_x("StringContains", json!(["GrId"])),
        json!({"x": "EVENTGRIDHUB"})
    ));
}

#[test]
fn string_comparisons_ignore_case_beyond_ascii() {
    assert!(one(
        on_x("StringIn", json!(["ÄPFEL"])),
        json!({"x": "äpfel"})
    ));
    assert!(one(
        on_x("StringBeginsWith", json!(["straße"])),
        json!({"x": "STRAßE 5"})
    ));
    assert!(one(
        on_x("StringEndsWith", json!(["ΟΔΟΣ"])),
        json!({"x": "κεντρική οδος"})
    ));
    assert!(one(
        on_x("StringContains", json!(["ÉTÉ"])),
        json!({"x": "l'été dernier"})
    ));
    // The Kelvin sign lower-cases to an ASCII 'k'.
    assert!(one(
        on_x("StringIn", json!(["kelvin"])),
        json!({"x": "\u{212A}ELVIN"})
    ));
    assert!(!one(
        on_x("StringContains", json!(["über"])),
        json!({"x": "uber"})
    ));
}

#[test]
fn string_operators_read_numbers_and_booleans_as_their_json_text() {
    // The doc's CloudEvents example filters the numeric extension attribute
    // `comexampleothervalue: 5` with StringBeginsWith ["5", "1"].
    let filter = json!({"operatorType": "StringBeginsWith", "key": "comexampleothervalue", "values": ["5", "1"]});
    let compiled = compile(json!({ "filters": [filter] }));
    let mut with_extension = event(json!({}));
    with_extension["comexampleothervalue"] = json!(5);
    assert!(compiled.matches(&with_extension));
    assert!(one(on_x("StringIn", json!(["true"])), json!({"x": true})));
    assert!(one(
        on_x("StringEndsWith", json!([".5"])),
        json!({"x": 2.5})
    ));
    assert!(!one(on_x("StringIn", json!(["5"])), json!({"x": 6})));
}

// ---- presence operators ----------------------------------------------------------------

#[test]
fn is_null_or_undefined_matches_a_missing_or_null_key() {
    let filter = on_x("IsNullOrUndefined", json!(null));
    assert!(one(filter.clone(), json!({"key2": 5})));
    assert!(one(filter.clone(), json!({"x": null})));
    assert!(one(filter, json!("data is a string")));
}

#[test]
fn is_null_or_undefined_rejects_any_value() {
    let filter = on_x("IsNullOrUndefined", json!(null));
    for value in [json!(0), json!(""), json!(false), json!([]), json!({})] {
        assert!(!one(filter.clone(), json!({ "x": value })), "{value}");
    }
}

#[test]
fn is_not_null_matches_any_value_including_arrays_and_objects() {
    let filter = on_x("IsNotNull", json!(null));
    for value in [
        json!(0),
        json!(""),
        json!(false),
        json!([1]),
        json!({"a": 1}),
    ] {
        assert!(one(filter.clone(), json!({ "x": value })), "{value}");
    }
}

#[test]
fn is_not_null_rejects_a_missing_or_null_key() {
    let filter = on_x("IsNotNull", json!(null));
    assert!(!one(filter.clone(), json!({})));
    assert!(!one(filter, json!({"x": null})));
}

#[test]
fn presence_operators_accept_an_empty_values_list() {
    assert!(one(on_x("IsNotNull", json!([])), json!({"x": 1})));
}

// ---- missing keys ----------------------------------------------------------------------

#[test]
fn missing_key_does_not_match_the_operators_the_doc_lists_as_not_matched() {
    let cases = [
        on_x("NumberGreaterThan", json!(0)),
        on_x("NumberGreaterThanOrEquals", json!(0)),
        on_x("NumberLessThan", json!(0)),
        on_x("NumberLessThanOrEquals", json!(0)),
        on_x("NumberIn", json!([0])),
        on_x("BoolEquals", json!(false)),
        on_x("StringContains", json!(["a"])),
        on_x("StringNotContains", json!(["a"])),
        on_x("StringBeginsWith", json!(["a"])),
        on_x("StringNotBeginsWith", json!(["a"])),
        on_x("StringEndsWith", json!(["a"])),
        on_x("StringNotEndsWith", json!(["a"])),
        on_x("StringIn", json!(["a"])),
        on_x("NumberInRange", json!([[0, 1]])),
    ];
    for filter in cases {
        assert!(!one(filter.clone(), json!({"other": 1})), "{filter}");
        assert!(!one(filter.clone(), json!({"x": null})), "{filter} on null");
    }
}

#[test]
fn missing_key_matches_number_not_in_and_string_not_in() {
    assert!(one(on_x("NumberNotIn", json!([1])), json!({})));
    assert!(one(on_x("StringNotIn", json!(["a"])), json!({})));
    assert!(one(on_x("StringNotIn", json!(["a"])), json!({"x": null})));
}

#[test]
fn missing_key_matches_number_not_in_range_like_number_not_in() {
    assert!(one(on_x("NumberNotInRange", json!([[0, 1]])), json!({})));
}

#[test]
fn missing_context_attribute_is_a_missing_key() {
    let filter = json!({"operatorType": "StringNotIn", "key": "dataschema", "values": ["x"]});
    assert!(one(filter, json!({})));
    let filter = json!({"operatorType": "StringIn", "key": "dataschema", "values": ["x"]});
    assert!(!one(filter, json!({})));
}

// ---- arrays ----------------------------------------------------------------------------

#[test]
fn arrays_off_an_array_value_matches_no_value_operator_not_even_not_operators() {
    for filter in [
        on_x("NumberIn", json!([1])),
        on_x("NumberNotIn", json!([9])),
        on_x("StringIn", json!(["a"])),
        on_x("StringNotIn", json!(["z"])),
        on_x("StringNotContains", json!(["z"])),
        on_x("NumberNotInRange", json!([[8, 9]])),
        on_x("BoolEquals", json!(true)),
    ] {
        assert!(
            !one(filter.clone(), json!({"x": [1, "a", true]})),
            "{filter}"
        );
    }
}

#[test]
fn arrays_on_a_positive_operator_matches_when_any_element_matches() {
    assert!(one_on_arrays(
        on_x("NumberIn", json!([3])),
        json!({"x": [1, 2, 3]})
    ));
    assert!(one_on_arrays(
        on_x("NumberLessThan", json!(2)),
        json!({"x": [5, 1]})
    ));
    assert!(one_on_arrays(
        on_x("NumberInRange", json!([[10, 20]])),
        json!({"x": [1, 15]})
    ));
    assert!(one_on_arrays(
        on_x("BoolEquals", json!(true)),
        json!({"x": [false, true]})
    ));
    assert!(one_on_arrays(
        on_x("StringEndsWith", json!([".png"])),
        json!({"x": ["a.txt", "B.PNG"]})
    ));
    assert!(!one_on_arrays(
        on_x("NumberIn", json!([4])),
        json!({"x": [1, 2, 3]})
    ));
    assert!(!one_on_arrays(
        on_x("StringContains", json!(["q"])),
        json!({"x": ["a", "b"]})
    ));
}

#[test]
fn arrays_on_a_not_operator_requires_that_no_element_matches() {
    assert!(one_on_arrays(
        on_x("NumberNotIn", json!([4, 5])),
        json!({"x": [1, 2, 3]})
    ));
    assert!(!one_on_arrays(
        on_x("NumberNotIn", json!([4, 2])),
        json!({"x": [1, 2, 3]})
    ));
    assert!(!one_on_arrays(
        on_x("NumberNotInRange", json!([[2, 2]])),
        json!({"x": [1, 2]})
    ));
    assert!(!one_on_arrays(
        on_x("StringNotIn", json!(["b"])),
        json!({"x": ["a", "B"]})
    ));
    assert!(!one_on_arrays(
        on_x("StringNotBeginsWith", json!(["a"])),
        json!({"x": ["za", "ab"]})
    ));
    assert!(!one_on_arrays(
        on_x("StringNotEndsWith", json!(["a"])),
        json!({"x": ["ab", "ba"]})
    ));
    assert!(one_on_arrays(
        on_x("StringNotContains", json!(["q"])),
        json!({"x": ["ab", "ba"]})
    ));
}

#[test]
fn arrays_on_elements_of_another_type_are_ignored() {
    // "Any key values with data types that don't match the filter's data type are ignored."
    assert!(one_on_arrays(
        on_x("NumberIn", json!([2])),
        json!({"x": ["a", {"b": 1}, null, 2]})
    ));
    assert!(!one_on_arrays(
        on_x("NumberIn", json!([2])),
        json!({"x": ["a", {"b": 2}, [2]]})
    ));
    assert!(one_on_arrays(
        on_x("NumberNotIn", json!([2])),
        json!({"x": ["two", {"b": 2}]})
    ));
}

#[test]
fn arrays_on_an_empty_array_matches_only_the_not_operators() {
    assert!(!one_on_arrays(
        on_x("StringIn", json!(["a"])),
        json!({"x": []})
    ));
    assert!(one_on_arrays(
        on_x("StringNotIn", json!(["a"])),
        json!({"x": []})
    ));
    assert!(one_on_arrays(
        on_x("StringNotContains", json!(["a"])),
        json!({"x": []})
    ));
}

#[test]
fn arrays_on_scalars_still_match_as_scalars() {
    assert!(one_on_arrays(on_x("NumberIn", json!([3])), json!({"x": 3})));
    assert!(!one_on_arrays(
        on_x("NumberNotIn", json!([3])),
        json!({"x": 3})
    ));
}

#[test]
fn presence_operators_see_arrays_as_values_whatever_the_array_flag() {
    for matcher in [one, one_on_arrays] {
        assert!(matcher(on_x("IsNotNull", json!(null)), json!({"x": []})));
        assert!(!matcher(
            on_x("IsNullOrUndefined", json!(null)),
            json!({"x": [null]})
        ));
    }
}

#[test]
fn object_values_match_no_value_operator() {
    for filter in [
        on_x("StringNotIn", json!(["a"])),
        on_x("NumberNotIn", json!([1])),
        on_x("StringIn", json!(["a"])),
    ] {
        assert!(!one(filter.clone(), json!({"x": {"a": 1}})), "{filter}");
        assert!(
            !one_on_arrays(filter.clone(), json!({"x": {"a": 1}})),
            "{filter}"
        );
    }
}

// ---- keys ------------------------------------------------------------------------------

#[test]
fn nested_data_paths_reach_deep_fields() {
    let filter = json!({"operatorType": "StringIn", "key": "data.a.b.c.d.e.f.g.h.i.j.k", "values": ["deep"]});
    let data =
        json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": "deep"}}}}}}}}}}});
    assert!(one(filter, data));
    let filter = json!({"operatorType": "StringIn", "key": "data.appEventTypeDetail.action", "values": ["started"]});
    assert!(one(
        filter,
        json!({"appEventTypeDetail": {"action": "Started"}})
    ));
}

#[test]
fn data_paths_only_descend_through_objects() {
    let filter = json!({"operatorType": "NumberIn", "key": "data.items.0", "values": [1]});
    assert!(!one(filter, json!({"items": [1]})));
    let filter = json!({"operatorType": "StringNotIn", "key": "data.a.b", "values": ["x"]});
    // `data.a` is a string, so `data.a.b` is missing, which StringNotIn matches.
    assert!(one(filter, json!({"a": "text"})));
}

#[test]
fn data_paths_find_nothing_in_data_base64_events() {
    let filter = compile(json!({"filters": [
        {"operatorType": "IsNullOrUndefined", "key": "data.a"}
    ]}));
    let binary = json!({"specversion": "1.0", "type": "t", "source": "/s", "id": "1", "data_base64": "eyJhIjoxfQ=="});
    assert!(filter.matches(&binary));
}

#[test]
fn key_data_alone_is_the_whole_data_value() {
    assert!(one(
        json!({"operatorType": "StringContains", "key": "data", "values": ["hello"]}),
        json!("Hello world")
    ));
    assert!(one(
        json!({"operatorType": "NumberGreaterThan", "key": "data", "value": 1}),
        json!(2)
    ));
}

#[test]
fn context_attributes_can_be_filtered() {
    let cases = [
        ("type", "contoso.orders.created"),
        ("source", "/contoso/orders"),
        ("subject", "orders/42"),
        ("id", "a234-1234-1234"),
        ("time", "2024-04-05T17:31:00Z"),
        ("datacontenttype", "application/json"),
        ("specversion", "1.0"),
    ];
    for (key, value) in cases {
        let filter = json!({"operatorType": "StringIn", "key": key, "values": [value]});
        assert!(one(filter, json!({})), "{key}");
    }
}

#[test]
fn extension_attributes_can_be_filtered() {
    let compiled = compile(json!({"filters": [
        {"operatorType": "StringIn", "key": "comexampleextension1", "values": ["value"]},
        {"operatorType": "NumberIn", "key": "comexampleothervalue", "values": [5]}
    ]}));
    let mut with_extensions = event(json!({}));
    with_extensions["comexampleextension1"] = json!("VALUE");
    with_extensions["comexampleothervalue"] = json!(5);
    assert!(compiled.matches(&with_extensions));
    with_extensions["comexampleothervalue"] = json!(6);
    assert!(!compiled.matches(&with_extensions));
}

#[test]
fn key_names_ignore_case_but_prefer_an_exact_match() {
    assert!(one(
        json!({"operatorType": "StringIn", "key": "Subject", "values": ["orders/42"]}),
        json!({})
    ));
    assert!(one(
        json!({"operatorType": "NumberIn", "key": "Data.Key1", "values": [1]}),
        json!({"key1": 1})
    ));
    let exact_first = json!({"operatorType": "NumberIn", "key": "data.Key", "values": [2]});
    assert!(one(exact_first.clone(), json!({"key": 1, "Key": 2})));
    assert!(!one(exact_first, json!({"key": 2, "Key": 1})));
}

#[test]
fn eventid_and_eventtype_keys_read_the_cloudevents_id_and_type() {
    assert!(one(
        json!({"operatorType": "StringIn", "key": "eventtype", "values": ["contoso.orders.created"]}),
        json!({})
    ));
    assert!(one(
        json!({"operatorType": "StringBeginsWith", "key": "EventId", "values": ["a234"]}),
        json!({})
    ));
}

#[test]
fn an_extension_named_like_an_alias_wins_over_the_alias() {
    let compiled = compile(json!({"filters": [
        {"operatorType": "StringIn", "key": "eventid", "values": ["ext"]}
    ]}));
    let mut with_extension = event(json!({}));
    with_extension["eventid"] = json!("ext");
    assert!(compiled.matches(&with_extension));
}

#[test]
fn events_that_are_not_objects_miss_every_key() {
    let compiled = compile(json!({"filters": [
        {"operatorType": "StringNotIn", "key": "subject", "values": ["x"]},
        {"operatorType": "IsNullOrUndefined", "key": "data.x"}
    ]}));
    assert!(compiled.matches(&json!([1, 2])));
    let compiled = compile(json!({"filters": [{"operatorType": "IsNotNull", "key": "subject"}]}));
    assert!(!compiled.matches(&json!("event")));
}

// ---- validation ------------------------------------------------------------------------

#[test]
fn rejects_more_than_25_advanced_filters() {
    let filters: Vec<Value> = (0..27)
        .map(|_| json!({"operatorType": "IsNotNull", "key": "subject"}))
        .collect();
    assert_eq!(
        problems(json!({ "filters": filters })),
        vec!["filters: 27 advanced filters; at most 25 are allowed"]
    );
}

#[test]
fn accepts_exactly_25_advanced_filters_with_25_values() {
    let filters: Vec<Value> = (0..25)
        .map(|n| json!({"operatorType": "NumberNotIn", "key": "data.x", "values": [n]}))
        .collect();
    let compiled = compile(json!({ "filters": filters }));
    assert!(compiled.matches(&event(json!({"x": 25}))));
    assert!(!compiled.matches(&event(json!({"x": 24}))));
}

#[test]
fn rejects_more_than_25_filter_values_across_all_filters() {
    let many: Vec<Value> = (0..20).map(|n| json!(n)).collect();
    let ranges: Vec<Value> = (0..5).map(|n| json!([n, n + 1])).collect();
    assert_eq!(
        problems(json!({ "filters": [
            {"operatorType": "NumberIn", "key": "data.a", "values": many},
            {"operatorType": "NumberInRange", "key": "data.b", "values": ranges},
            {"operatorType": "NumberLessThan", "key": "data.c", "value": 3}
        ]})),
        vec!["filters: 26 filter values across all filters; at most 25 are allowed"]
    );
}

#[test]
fn rejects_an_unknown_operator_listing_the_known_ones() {
    let found = problems(json!({ "filters": [
        {"operatorType": "IsNotNull", "key": "subject"},
        {"operatorType": "StringEquals", "key": "subject", "values": ["a"]}
    ]}));
    assert_eq!(
        found,
        vec![
            "filters[1].operatorType: unknown operator 'StringEquals'; expected one of NumberIn, \
             NumberNotIn, NumberLessThan, NumberGreaterThan, NumberLessThanOrEquals, \
             NumberGreaterThanOrEquals, NumberInRange, NumberNotInRange, BoolEquals, StringIn, \
             StringNotIn, StringBeginsWith, StringNotBeginsWith, StringEndsWith, \
             StringNotEndsWith, StringContains, StringNotContains, IsNullOrUndefined, IsNotNull"
        ]
    );
}

#[test]
fn rejects_an_empty_key() {
    assert_eq!(
        filter_problems(json!({"operatorType": "IsNotNull", "key": " "})),
        vec!["filters[0].key: key must not be empty"]
    );
}

#[test]
fn rejects_a_key_with_an_empty_name_between_dots() {
    for key in ["data..a", ".data", "data."] {
        assert_eq!(
            filter_problems(json!({"operatorType": "IsNotNull", "key": key})),
            vec![format!(
                "filters[0].key: key '{key}' has an empty name between dots; write it like data.order.total"
            )]
        );
    }
}

#[test]
fn rejects_an_empty_included_event_type() {
    assert_eq!(
        problems(json!({"includedEventTypes": ["a", ""]})),
        vec!["includedEventTypes[1]: event type must not be empty"]
    );
}

#[test]
fn number_in_needs_numbers_in_values() {
    assert_eq!(
        filter_problems(on_x("NumberIn", json!([1, "2", true]))),
        vec![
            "filters[0].values: NumberIn needs numbers; value 1 is \"2\"",
            "filters[0].values: NumberIn needs numbers; value 2 is true",
        ]
    );
}

#[test]
fn number_not_in_needs_at_least_one_value() {
    assert_eq!(
        filter_problems(on_x("NumberNotIn", json!([]))),
        vec!["filters[0].values: NumberNotIn needs at least one number in 'values'"]
    );
    assert_eq!(
        filter_problems(on_x("NumberNotIn", json!(null))),
        vec!["filters[0].values: NumberNotIn needs at least one number in 'values'"]
    );
}

#[test]
fn multi_valued_operators_reject_a_single_value() {
    assert_eq!(
        filter_problems(on_x("NumberIn", json!(5))),
        vec![
            "filters[0].value: NumberIn takes its numbers in 'values', not 'value'",
            "filters[0].values: NumberIn needs at least one number in 'values'",
        ]
    );
    assert_eq!(
        filter_problems(
            json!({"operatorType": "StringIn", "key": "subject", "value": "a", "values": ["a"]})
        ),
        vec!["filters[0].value: StringIn takes its strings in 'values', not 'value'"]
    );
    assert_eq!(
        filter_problems(
            json!({"operatorType": "NumberInRange", "key": "data.x", "value": [1, 2], "values": [[1, 2]]})
        ),
        vec!["filters[0].value: NumberInRange takes its [min, max] pairs in 'values', not 'value'"]
    );
}

#[test]
fn number_less_than_takes_a_single_number_in_value() {
    for bad in [json!(null), json!("5"), json!(true), json!({"a": 1})] {
        assert_eq!(
            filter_problems(on_x("NumberLessThan", bad)),
            vec!["filters[0].value: NumberLessThan takes a single number in 'value'"]
        );
    }
}

#[test]
fn single_number_operators_reject_values() {
    assert_eq!(
        filter_problems(
            json!({"operatorType": "NumberGreaterThanOrEquals", "key": "data.x", "values": [1]})
        ),
        vec![
            "filters[0].values: NumberGreaterThanOrEquals takes a single number in 'value', not 'values'",
            "filters[0].value: NumberGreaterThanOrEquals takes a single number in 'value'",
        ]
    );
}

#[test]
fn bool_equals_takes_a_single_boolean_in_value() {
    assert_eq!(
        filter_problems(on_x("BoolEquals", json!("true"))),
        vec!["filters[0].value: BoolEquals takes a single boolean in 'value'"]
    );
    assert_eq!(
        filter_problems(
            json!({"operatorType": "BoolEquals", "key": "data.x", "value": true, "values": [true]})
        ),
        vec!["filters[0].values: BoolEquals takes a single boolean in 'value', not 'values'"]
    );
}

#[test]
fn number_in_range_needs_min_max_pairs() {
    let found = filter_problems(json!({
        "operatorType": "NumberInRange", "key": "data.x",
        "values": [[1, 2], 7, [1, 2, 3], ["a", 2], [1]]
    }));
    let found: Vec<Value> = found.into_iter().map(Value::String).collect();
    assert_eq!(
        found,
        vec![
            json!("filters[0].values: NumberInRange needs [min, max] pairs; value 1 is 7"),
            json!("filters[0].values: NumberInRange needs [min, max] pairs; value 2 is [1,2,3]"),
            json!("filters[0].values: NumberInRange needs [min, max] pairs; value 3 is [\"a\",2]"),
            json!("filters[0].values: NumberInRange needs [min, max] pairs; value 4 is [1]"),
        ]
    );
}

#[test]
fn number_not_in_range_needs_min_not_above_max() {
    assert_eq!(
        filter_problems(on_x("NumberNotInRange", json!([[5, 1]]))),
        vec![
            "filters[0].values: NumberNotInRange needs [min, max] pairs with min <= max; value 0 is [5,1]"
        ]
    );
    // A range of one number is fine.
    assert!(one(
        on_x("NumberNotInRange", json!([[5, 5]])),
        json!({"x": 6})
    ));
}

#[test]
fn number_in_range_needs_at_least_one_pair() {
    assert_eq!(
        filter_problems(on_x("NumberInRange", json!([]))),
        vec!["filters[0].values: NumberInRange needs at least one [min, max] pair in 'values'"]
    );
}

#[test]
fn string_operators_need_strings_in_values() {
    assert_eq!(
        filter_problems(on_x("StringContains", json!(["ok", 5, null]))),
        vec![
            "filters[0].values: StringContains needs strings; value 1 is 5",
            "filters[0].values: StringContains needs strings; value 2 is null",
        ]
    );
    assert_eq!(
        filter_problems(on_x("StringNotEndsWith", json!(null))),
        vec!["filters[0].values: StringNotEndsWith needs at least one string in 'values'"]
    );
}

#[test]
fn string_values_may_have_at_most_512_characters() {
    let longest = "é".repeat(512);
    assert!(one(
        on_x("StringIn", json!([longest.clone()])),
        json!({ "x": longest })
    ));
    assert_eq!(
        filter_problems(on_x("StringIn", json!(["a", "é".repeat(513)]))),
        vec!["filters[0].values: StringIn value 1 is 513 characters; at most 512 are allowed"]
    );
}

#[test]
fn presence_operators_take_no_operands() {
    assert_eq!(
        filter_problems(
            json!({"operatorType": "IsNotNull", "key": "subject", "value": 1, "values": ["a"]})
        ),
        vec![
            "filters[0].value: IsNotNull takes no value",
            "filters[0].values: IsNotNull takes no values",
        ]
    );
}

#[test]
fn long_values_are_cut_short_in_messages() {
    let found = filter_problems(on_x("NumberIn", json!(["x".repeat(100)])));
    assert_eq!(found.len(), 1);
    assert!(found[0].ends_with('…'), "{}", found[0]);
    assert!(found[0].chars().count() < 130, "{}", found[0]);
}

#[test]
fn compile_reports_every_problem_not_just_the_first() {
    let found = problems(json!({
        "includedEventTypes": [""],
        "filters": [
            {"operatorType": "NumberIn", "key": "", "values": ["a"]},
            {"operatorType": "IsNotNull", "key": "subject"},
            {"operatorType": "Nope", "key": "subject"},
            {"operatorType": "NumberInRange", "key": "data.x", "values": [7]}
        ]
    }));
    assert_eq!(
        found,
        vec![
            "includedEventTypes[0]: event type must not be empty".to_string(),
            "filters[0].key: key must not be empty".to_string(),
            "filters[0].values: NumberIn needs numbers; value 0 is \"a\"".to_string(),
            format!(
                "filters[2].operatorType: unknown operator 'Nope'; expected one of {}",
                OperatorType::ALL
                    .iter()
                    .map(OperatorType::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "filters[3].values: NumberInRange needs [min, max] pairs; value 0 is 7".to_string(),
        ]
    );
}

#[test]
fn problems_nest_under_the_subscription_field() {
    let Err(found) = CompiledFilter::compile(&config(json!({
        "filters": [{"operatorType": "NumberLessThan", "key": "data.x"}]
    }))) else {
        panic!("expected problems");
    };
    let nested: Vec<String> = found
        .into_iter()
        .map(|problem| problem.under("spec.filtersConfiguration").field)
        .collect();
    assert_eq!(nested, vec!["spec.filtersConfiguration.filters[0].value"]);
}

// ---- string matching internals ---------------------------------------------------------

/// Reference: lower-case both strings (per character) and compare with std.
fn reference(operation: StringOperation, text: &str, wanted: &str) -> bool {
    let text: String = lowered(text).collect();
    let wanted: String = lowered(wanted).collect();
    match operation {
        StringOperation::In => text == wanted,
        StringOperation::BeginsWith => text.starts_with(&wanted),
        StringOperation::EndsWith => text.ends_with(&wanted),
        StringOperation::Contains => text.contains(&wanted),
    }
}

#[test]
fn number_text_matches_serde_json_formatting() {
    for number in [
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(2.5),
        json!(-1.7976931348623157e308),
        json!(5e-324),
    ] {
        let Value::Number(n) = &number else {
            unreachable!()
        };
        assert_eq!(NumberText::of(n).unwrap().as_str(), number.to_string());
    }
}

// ---- properties ------------------------------------------------------------------------

/// Strings from a small alphabet, so filters and events often overlap.
fn small_string() -> impl Strategy<Value = String> {
    prop::string::string_regex("[aAbBéÉ1.5-]{0,4}").expect("valid regex")
}

/// Scalar event values: strings (numeric ones included), numbers and booleans.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        small_string().prop_map(Value::String),
        (-3i64..4).prop_map(|n| json!(n)),
        (-3i64..4).prop_map(|n| json!(n.to_string())),
        (-30i64..40).prop_map(|n| json!(n as f64 / 10.0)),
        any::<bool>().prop_map(Value::Bool),
    ]
}

/// A (positive, Not twin, values) triple with values fitting the operators.
fn twin_filter() -> impl Strategy<Value = (&'static str, &'static str, Value)> {
    let numbers = prop::collection::vec((-3i64..4).prop_map(|n| json!(n)), 1..4);
    let ranges = prop::collection::vec(
        (-3i64..4, 0i64..3).prop_map(|(min, width)| json!([min, min + width])),
        1..3,
    );
    let strings = prop::collection::vec(small_string().prop_map(Value::String), 1..4);
    let string_pairs = prop_oneof![
        Just(("StringIn", "StringNotIn")),
        Just(("StringBeginsWith", "StringNotBeginsWith")),
        Just(("StringEndsWith", "StringNotEndsWith")),
        Just(("StringContains", "StringNotContains")),
    ];
    prop_oneof![
        numbers.prop_map(|values| ("NumberIn", "NumberNotIn", Value::Array(values))),
        ranges.prop_map(|values| ("NumberInRange", "NumberNotInRange", Value::Array(values))),
        (string_pairs, strings).prop_map(|((positive, negative), values)| (
            positive,
            negative,
            Value::Array(values)
        )),
    ]
}

/// Arbitrary JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z.]{0,4}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn any_operator() -> impl Strategy<Value = OperatorType> {
    prop_oneof![
        prop::sample::select(OperatorType::ALL.to_vec()),
        "[A-Za-z]{0,12}".prop_map(|name| OperatorType::from_name(&name)),
    ]
}

fn any_filter() -> impl Strategy<Value = AdvancedFilter> {
    (
        any_operator(),
        "[a-zA-Z.]{0,10}",
        prop::option::of(any_json()),
        prop::option::of(prop::collection::vec(any_json(), 0..6)),
    )
        .prop_map(|(operator_type, key, value, values)| AdvancedFilter {
            operator_type,
            key,
            value,
            values,
        })
}

proptest! {
    // The doc's pseudo code for every Not operator is its twin's with MATCH replaced by
    // FAIL_MATCH, so on any present scalar the two must disagree.
    #[test]
    fn not_operators_negate_their_positive_twins_on_present_scalars(
        (positive, negative, values) in twin_filter(),
        value in scalar(),
        arrays in any::<bool>(),
    ) {
        let build = |operator: &str| compile(json!({
            "filters": [{"operatorType": operator, "key": "data.x", "values": values.clone()}],
            "enableAdvancedFilteringOnArrays": arrays,
        }));
        let event = event(json!({ "x": value }));
        prop_assert_eq!(build(positive).matches(&event), !build(negative).matches(&event));
    }

    // With arrays on, "any element matches" and "no element matches" are negations too.
    #[test]
    fn not_operators_negate_their_positive_twins_on_arrays_when_enabled(
        (positive, negative, values) in twin_filter(),
        items in prop::collection::vec(scalar(), 0..4),
    ) {
        let build = |operator: &str| compile(json!({
            "filters": [{"operatorType": operator, "key": "data.x", "values": values.clone()}],
            "enableAdvancedFilteringOnArrays": true,
        }));
        let event = event(json!({ "x": items }));
        prop_assert_eq!(build(positive).matches(&event), !build(negative).matches(&event));
    }

    // Whatever a user (or a stale object) puts in the spec, compiling and matching must
    // return, never panic.
    #[test]
    fn compile_never_panics_on_arbitrary_json(
        filters in prop::collection::vec(any_filter(), 0..4),
        included_event_types in prop::collection::vec(".{0,6}", 0..3),
        arrays in any::<bool>(),
        data in any_json(),
    ) {
        let config = FiltersConfiguration {
            included_event_types,
            filters,
            enable_advanced_filtering_on_arrays: arrays,
        };
        if let Ok(compiled) = CompiledFilter::compile(&config) {
            compiled.matches(&event(data.clone()));
            compiled.matches(&data);
        }
    }

    // Whatever string the event carries, a StringIn listing that very string matches it.
    #[test]
    fn string_in_with_a_value_taken_from_the_event_always_matches(
        text in ".{0,512}",
        key in "[a-z]{1,8}",
    ) {
        let filter = json!({"operatorType": "StringIn", "key": format!("data.{key}"), "values": [text.clone()]});
        let mut data = Map::new();
        data.insert(key, Value::String(text.clone()));
        prop_assert!(one(filter.clone(), Value::Object(data.clone())));
        // A number of ASCII case flips changes nothing either.
        let flipped: String = text.chars().map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
        data.insert("flipped".into(), Value::String(flipped));
        let flipped_filter = json!({"operatorType": "StringIn", "key": "data.flipped", "values": [text]});
        prop_assert!(one(flipped_filter, Value::Object(data)));
    }

    // Slices of the event's string are its prefix, suffix and substring.
    #[test]
    fn slices_of_the_event_string_match_begins_ends_and_contains(
        (text, start, end) in ".{0,40}".prop_flat_map(|text| {
            let count = text.chars().count();
            (Just(text), 0..=count, 0..=count)
        }),
    ) {
        let (start, end) = (start.min(end), start.max(end));
        let chars: Vec<char> = text.chars().collect();
        let head: String = chars[..start].iter().collect();
        let tail: String = chars[end..].iter().collect();
        let middle: String = chars[start..end].iter().collect();
        let data = json!({ "x": text });
        prop_assert!(one(on_x("StringBeginsWith", json!([head])), data.clone()));
        prop_assert!(one(on_x("StringEndsWith", json!([tail])), data.clone()));
        prop_assert!(one(on_x("StringContains", json!([middle])), data));
    }

    // The allocation-free comparisons agree with lower-casing both strings up front.
    #[test]
    fn string_comparisons_agree_with_lowercasing_both_sides(
        text in "[aAbBßẞİıIiΣσςK\u{212A}é]{0,6}",
        wanted in "[aAbBßẞİıIiΣσςK\u{212A}é]{0,3}",
    ) {
        let folded = Folded::new(&wanted);
        for operation in [StringOperation::In, StringOperation::BeginsWith, StringOperation::EndsWith, StringOperation::Contains] {
            prop_assert_eq!(
                operation.holds(&text, &folded),
                reference(operation, &text, &wanted),
                "{:?} {:?} {:?}", operation, text, wanted
            );
        }
    }

    // Same, on ASCII, where the byte fast paths decide.
    #[test]
    fn ascii_fast_paths_agree_with_lowercasing_both_sides(
        text in "[aAbB.]{0,8}",
        wanted in "[aAbB.]{0,3}",
    ) {
        let folded = Folded::new(&wanted);
        for operation in [StringOperation::In, StringOperation::BeginsWith, StringOperation::EndsWith, StringOperation::Contains] {
            prop_assert_eq!(operation.holds(&text, &folded), reference(operation, &text, &wanted));
        }
    }

    // Number operators agree with plain f64 arithmetic on the event's number.
    #[test]
    fn number_comparisons_agree_with_f64(value in -1e6f64..1e6, bound in -1e6f64..1e6) {
        let data = json!({"x": value});
        prop_assert_eq!(one(on_x("NumberLessThan", json!(bound)), data.clone()), value < bound);
        prop_assert_eq!(one(on_x("NumberGreaterThan", json!(bound)), data.clone()), value > bound);
        prop_assert_eq!(one(on_x("NumberLessThanOrEquals", json!(bound)), data.clone()), value <= bound);
        prop_assert_eq!(one(on_x("NumberGreaterThanOrEquals", json!(bound)), data), value >= bound);
    }
}

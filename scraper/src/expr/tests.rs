use serde_json::json;

use super::*;

fn eval(source: &str, object: &Json) -> Result<Json, ExprError> {
    Expr::compile(source, Scope::Item)
        .unwrap()
        .eval(&Input::new(object), None)
}

#[test]
fn a_parse_error_points_inside_the_expression() {
    let error = Expr::compile("object.a +", Scope::Object).unwrap_err();
    assert!(error.message.contains("does not parse"), "{error:?}");
    assert_eq!(error.offset, Some(10));
    let error = Expr::compile("object.a\n  && )", Scope::Object).unwrap_err();
    assert_eq!(error.offset, Some(14), "{error:?}");
    let error = Expr::compile("a ) b", Scope::Object).unwrap_err();
    assert_eq!(error.offset, Some(2), "{error:?}");
}

#[test]
fn the_object_and_the_item_are_bound() {
    let object = json!({"spec": {"replicas": 3, "name": "Web"}});
    assert_eq!(eval("object.spec.replicas * 2", &object), Ok(json!(6)));
    assert_eq!(
        eval("object.spec.name.lowerAscii()", &object),
        Ok(json!("web"))
    );
    let expr = Expr::compile("item.port + size(object.spec)", Scope::Item).unwrap();
    let item = json!({"port": 80});
    assert_eq!(expr.eval(&Input::new(&object), Some(&item)), Ok(json!(82)));
}

#[test]
fn standard_and_kubernetes_functions_are_there() {
    let object = json!({
        "name": "prod-web-1",
        "created": "2024-05-01T10:00:00Z",
        "memory": "2Gi",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}],
    });
    assert_eq!(
        eval("object.name.matches('^prod-')", &object),
        Ok(json!(true))
    );
    assert_eq!(
        eval("quantity(object.memory)", &object),
        Ok(json!(2147483648.0))
    );
    assert_eq!(
        eval("timestamp(object.created) + duration('90s')", &object),
        Ok(json!("2024-05-01T10:01:30+00:00"))
    );
    assert_eq!(eval("duration('1m30s')", &object), Ok(json!(90.0)));
    assert_eq!(
        eval(
            "object.conditions.filter(c, c.type == 'Ready' && c.status == 'True').size() > 0 ? 1 : 0",
            &object
        ),
        Ok(json!(1))
    );
    assert_eq!(eval("has(object.missing)", &object), Ok(json!(false)));
}

#[test]
fn failures_are_errors_not_panics() {
    let object = json!({"a": 1});
    assert!(matches!(
        eval("object.b", &object),
        Err(ExprError::Failed(_))
    ));
    assert!(matches!(eval("1 / 0", &object), Err(ExprError::Failed(_))));
    assert!(matches!(
        eval("quantity('lots')", &object),
        Err(ExprError::Failed(_))
    ));
    assert!(matches!(
        eval("b'x'", &object),
        Err(ExprError::NotAValue(_))
    ));
    let filter = Expr::compile("object.a", Scope::Object).unwrap();
    assert!(matches!(
        filter.keeps(&Input::new(&object), None),
        Err(ExprError::NotABool(_))
    ));
}

#[test]
fn nested_comprehensions_over_large_lists_are_refused() {
    let object = json!({"xs": (0..2000).collect::<Vec<_>>()});
    assert_eq!(
        eval("object.xs.filter(x, x > 1990).size()", &object),
        Ok(json!(9))
    );
    let nested = "object.xs.all(x, object.xs.exists(y, y == x))";
    assert_eq!(
        eval(nested, &object),
        Err(ExprError::TooCostly {
            largest: 2000,
            depth: 2
        })
    );
    let small = json!({"xs": [1, 2, 3]});
    assert_eq!(eval(nested, &small), Ok(json!(true)));
}

#[test]
fn an_error_span_points_into_the_quoted_text_when_it_can() {
    // `x = "a +"` with the value at 4..9.
    assert_eq!(error_span(4..9, "a +", Some(3)), 8..8);
    assert_eq!(error_span(4..9, "a +", Some(1)), 6..7);
    // Escapes make the text longer than the value: the whole value.
    assert_eq!(error_span(4..12, "a \"+", Some(3)), 4..12);
    assert_eq!(error_span(4..9, "a +", None), 4..9);
}

#[test]
fn unknown_variables_are_compile_errors_at_their_position() {
    let error = Expr::compile("object.a + obj.b", Scope::Object).unwrap_err();
    assert!(
        error.message.starts_with("unknown variable `obj`"),
        "{error:?}"
    );
    assert_eq!(error.offset, Some(11));
    let error = Expr::compile("item.a", Scope::Object).unwrap_err();
    assert!(
        error.message.contains("only in a metric with `each`"),
        "{error:?}"
    );
    // Comprehension variables and type names are bound.
    for source in [
        "object.xs.all(x, x > 0)",
        "object.m.exists(k, object.m[k] == 1)",
        "type(object.a) == string",
        "item.a",
    ] {
        assert!(Expr::compile(source, Scope::Item).is_ok(), "{source}");
    }
}

#[test]
fn an_expression_without_variables_is_computed_once_at_compile_time() {
    let expr = Expr::compile(r#""kubevirt.io""#, Scope::Object).unwrap();
    assert_eq!(expr.constant, Some(json!("kubevirt.io")));
    let object = json!({"big": [1, 2, 3]});
    let input = Input::new(&object);
    assert_eq!(expr.eval(&input, None), Ok(json!("kubevirt.io")));
    // The object was never converted for it.
    assert!(input.bound.get().is_none());
    let expr = Expr::compile("60 * 60", Scope::Object).unwrap();
    assert_eq!(expr.constant, Some(json!(3600)));
    // One that fails still fails at each evaluation, with its own error.
    let expr = Expr::compile("1 / 0", Scope::Object).unwrap();
    assert_eq!(expr.constant, None);
    assert!(matches!(expr.eval(&input, None), Err(ExprError::Failed(_))));
    // One that reads a variable is not constant.
    let expr = Expr::compile(r#"has(object.big) ? "a" : "a""#, Scope::Object).unwrap();
    assert_eq!(expr.constant, None);
}

#[test]
fn an_expression_of_the_item_alone_leaves_the_object_unconverted() {
    let object = json!({"spec": {"list": [1, 2, 3, 4, 5]}});
    let item = json!({"port": 80});
    let input = Input::new(&object);
    let expr = Expr::compile("item.port + 1", Scope::Item).unwrap();
    assert_eq!(expr.eval(&input, Some(&item)), Ok(json!(81)));
    assert!(input.bound.get().is_none());
    let expr = Expr::compile("item.port + size(object.spec.list)", Scope::Item).unwrap();
    assert_eq!(expr.eval(&input, Some(&item)), Ok(json!(85)));
    assert!(input.bound.get().is_none());
    let expr = Expr::compile("item.port + size(object)", Scope::Item).unwrap();
    assert_eq!(expr.eval(&input, Some(&item)), Ok(json!(81)));
    assert!(input.bound.get().is_some());
}

#[test]
fn an_expression_reading_fields_by_name_converts_those_fields_alone() {
    let object = json!({
        "metadata": {"labels": {"kubevirt.io/vm": "vm1", "app": "web"}},
        "status": {"phase": "Running", "nodeName": "n1", "conditions": [1, 2]},
        "spec": {"big": [1, 2, 3]},
    });
    let input = Input::new(&object);
    let cases = [
        ("object.status.phase", json!("Running")),
        ("has(object.status.phase)", json!(true)),
        ("has(object.status.missing)", json!(false)),
        ("size(object.status)", json!(3)),
        ("size(object.status.conditions)", json!(2)),
        (
            r#"object.?status.?phase.orValue(null) != null"#,
            json!(true),
        ),
        (
            r#"object.?status.?gone.?deeper.orValue(null) != null"#,
            json!(false),
        ),
        // Selecting in a value that is no map: none, as on the whole object.
        (
            r#"object.?status.?phase.?x.orValue(null) != null"#,
            json!(false),
        ),
        (
            r#"object.?metadata.?labels[?"kubevirt.io/vm"].orValue("")"#,
            json!("vm1"),
        ),
        (
            r#"type(object.?status.?phase.orValue(null)) == string"#,
            json!(true),
        ),
        (r#""phase" in object.status"#, json!(true)),
        // An index computed from the object reads what it is computed from too.
        (
            r#"object.metadata.labels[object.metadata.labels.app == "web" ? "kubevirt.io/vm" : "app"]"#,
            json!("vm1"),
        ),
        (
            r#"has(object.metadata[object.status.phase == "Running" ? "labels" : "x"].app)"#,
            json!(true),
        ),
        (
            r#""app" in object.metadata[object.status.phase == "Running" ? "labels" : "x"]"#,
            json!(true),
        ),
        (
            r#"object.status.nodeName + "/" + object.metadata.labels.app"#,
            json!("n1/web"),
        ),
    ];
    for (source, expected) in cases {
        let expr = Expr::compile(source, Scope::Object).unwrap();
        assert!(
            matches!(expr.binding, Binding::Fields(_)),
            "{source}: {:?}",
            expr.binding
        );
        assert_eq!(expr.eval(&input, None), Ok(expected), "{source}");
    }
    assert!(
        input.bound.get().is_none(),
        "the whole object was converted"
    );
    // Failing as on the whole object: a field of a string.
    let expr = Expr::compile("object.status.phase.x", Scope::Object).unwrap();
    assert!(matches!(expr.eval(&input, None), Err(ExprError::Failed(_))));
    for whole in [
        "size(object) > 0",
        r#""status" in object"#,
        "object.exists(k, k == 'spec')",
        "object[object.spec.key]",
    ] {
        let expr = Expr::compile(whole, Scope::Object).unwrap();
        assert!(matches!(expr.binding, Binding::Whole), "{whole}");
    }
    // The type of the object needs none of its fields.
    let expr = Expr::compile("type(object) == map", Scope::Object).unwrap();
    assert!(matches!(&expr.binding, Binding::Fields(keep) if keep.fields().count() == 0));
    assert_eq!(expr.eval(&input, None), Ok(Json::Bool(true)));
}

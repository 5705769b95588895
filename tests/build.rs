//! How `sam build` builds the functions: SAM gives functions with the same code, runtime,
//! architecture and `Metadata` one build definition, and builds it once. Every function runs the
//! one binary (`shop-functions`, `HERALD_FUNCTION` picks the function), so one definition means
//! one cargo build for the whole template (BENCHMARKS.md table 6 measures it); a function whose
//! `Metadata` differs costs SAM a second pass.

mod common;

use herald_local::Template;

#[test]
fn every_function_is_built_from_one_definition_of_the_one_binary() {
    let template = Template::load(&common::root().join("template.yaml")).unwrap();
    let functions: Vec<_> = template.of_kind("AWS::Serverless::Function").collect();
    assert_eq!(functions.len(), 13);
    let (first_id, first) = functions[0];
    for (id, function) in &functions {
        assert_eq!(
            function.metadata, first.metadata,
            "{id}'s Metadata differs from {first_id}'s: SAM would build it apart"
        );
        // The repository, wherever the function's template sits (`.` here, `../..` from a
        // building block in infra/blocks/).
        let code = function.properties["CodeUri"].as_str().unwrap();
        let at_root = [common::root(), common::root().join("infra/blocks")]
            .iter()
            .any(|dir| dir.join(code).canonicalize().ok() == common::root().canonicalize().ok());
        assert!(at_root, "{id}: CodeUri {code} is not the repository");
        for property in ["Runtime", "Architectures"] {
            assert_eq!(
                function.properties.get(property),
                first.properties.get(property),
                "{id}: {property}"
            );
        }
        assert!(
            function.properties["Environment"]["Variables"]
                .get("HERALD_FUNCTION")
                .is_some(),
            "{id} names its function in HERALD_FUNCTION"
        );
    }
    assert_eq!(first.metadata["BuildMethod"], "rust-cargolambda");
    assert_eq!(
        first.metadata["BuildProperties"]["Binary"],
        "shop-functions"
    );
}

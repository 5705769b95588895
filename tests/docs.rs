//! The README's numbers are the template's: a count written in prose drifts as the template grows
//! (the README said 44 alarms while the template had 51; issue 24, item 10). Each count the README
//! states about the template is read back from the template here.

mod common;

use herald_local::Template;

fn readme() -> String {
    std::fs::read_to_string(common::root().join("README.md")).unwrap()
}

fn template() -> Template {
    Template::load(&common::root().join("template.yaml")).unwrap()
}

/// The number written right after `marker` in the README.
fn stated(readme: &str, marker: &str) -> usize {
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("the README no longer says `{marker}`"))
        + marker.len();
    let digits: String = readme[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{marker}` in the README"))
}

#[test]
fn the_readme_counts_the_alarms_and_functions_the_template_has() {
    let readme = readme();
    let template = template();
    let alarms = template.of_kind("AWS::CloudWatch::Alarm").count();
    assert_eq!(
        stated(&readme, "**Alarms** ("),
        alarms,
        "README \"Alarms (N\" against template.yaml"
    );
    let functions = template.of_kind("AWS::Serverless::Function").count();
    let words = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    ];
    assert!(
        readme.contains(&format!("the shop's {} Lambda functions", words[functions])),
        "the README's layout names {functions} functions"
    );
}

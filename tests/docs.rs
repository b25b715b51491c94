//! The documentation's links: every relative link, image and `#anchor` of
//! the Markdown files resolves (scripts/check-doc-links.py, GitHub's
//! anchor rules), so that a moved section cannot leave a dead link behind.

use crate::harness::{output_ok, repo};

#[test]
fn every_link_of_the_docs_resolves() {
    output_ok(
        std::process::Command::new("python3")
            .arg(repo().join("scripts/check-doc-links.py"))
            .current_dir(repo()),
    );
}

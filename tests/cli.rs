//! CLI behaviour as files: every `tests/cmd/*.toml` case runs the `kvseal` binary from the
//! repository root and compares its status, stdout and stderr.

#[test]
fn cli_cases() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}

//! The config as read: one file, or every `*.toml` file of a directory merged into one, with each
//! problem routed back to the file, line, column and key it is about.
//!
//! A directory is read in file-name order. `[host]` and `[kubernetes]` may appear in one file
//! only; `[[resources]]`, `[[endpoints]]`, `[[exporters]]` and `[[sources.files]]` are concatenated.
//! The merged config numbers entries across files (`resources[3]`), so every problem found later
//! (by `check`, by the pipeline's compiler) is mapped back: `resources[3]` may be `resources[0]`
//! of the second file.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use periscope_plugin_api::config::{ConfigError, key_span, line_column};
use sha2::{Digest as _, Sha256};

use super::{Config, EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME};

/// One problem in the config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the user gave it (a directory's files as `dir/name.toml`).
    pub file: String,
    /// The dotted key (`exporters[1].plugin`), empty when the problem is not about one key.
    pub key: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in the config, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The problems, by file (in reading order), then position.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// One config file's name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// The file name as the user gave it.
    pub name: String,
    /// The whole text.
    pub text: String,
}

/// The arrays of tables that files concatenate, by their dotted key.
const LISTS: [&str; 4] = ["resources", "endpoints", "exporters", "sources.files"];
/// The tables that only one file may hold.
const SINGLE_TABLES: [&str; 2] = ["host", "kubernetes"];

/// The text of the config: one file or several, to parse and to turn byte spans and keys into
/// positions.
#[derive(Debug, Clone)]
pub struct ConfigText {
    files: Vec<ConfigFile>,
    /// For each of [`LISTS`]: the file and the index in that file of each merged entry.
    lists: [Vec<(usize, usize)>; 4],
    /// For each of [`SINGLE_TABLES`]: the files that have it.
    tables: [Vec<usize>; 2],
}

impl ConfigText {
    /// Reads `path`: a file, or every `*.toml` file in a directory (not recursively; names
    /// starting with `.` are skipped, which leaves out the `..data` entries of a mounted
    /// ConfigMap while its `*.toml` links are followed).
    pub fn read(path: &Path) -> Result<ConfigText, ConfigErrors> {
        let whole = |message: String| ConfigErrors {
            problems: vec![Problem {
                file: path.display().to_string(),
                key: String::new(),
                line: 0,
                column: 0,
                message,
            }],
        };
        let meta =
            std::fs::metadata(path).map_err(|e| whole(format!("cannot read the config: {e}")))?;
        if !meta.is_dir() {
            return Ok(ConfigText::new(with_imports(vec![read_file(path)?])?));
        }
        let mut names = Vec::new();
        let entries = std::fs::read_dir(path)
            .map_err(|e| whole(format!("cannot read the config directory: {e}")))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| whole(format!("cannot read the config directory: {e}")))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && name.ends_with(".toml") {
                names.push(entry.path());
            }
        }
        if names.is_empty() {
            return Err(whole(
                "the config directory holds no `*.toml` file".to_owned(),
            ));
        }
        names.sort();
        let mut files = Vec::new();
        let mut problems = Vec::new();
        for name in names {
            match read_file(&name) {
                Ok(file) => files.push(file),
                Err(errors) => problems.extend(errors.problems),
            }
        }
        if problems.is_empty() {
            Ok(ConfigText::new(with_imports(files)?))
        } else {
            Err(ConfigErrors { problems })
        }
    }

    /// The embedded quick-start config.
    pub fn embedded_default() -> ConfigText {
        ConfigText::one(EMBEDDED_DEFAULT_NAME, EMBEDDED_DEFAULT)
    }

    /// A config of one file named `name` holding `text`.
    pub fn one(name: &str, text: &str) -> ConfigText {
        ConfigText::new(vec![ConfigFile {
            name: name.to_owned(),
            text: text.to_owned(),
        }])
    }

    /// The config made of `files`, merged in this order.
    pub fn new(files: Vec<ConfigFile>) -> ConfigText {
        let mut lists: [Vec<(usize, usize)>; 4] = Default::default();
        let mut tables: [Vec<usize>; 2] = Default::default();
        for (f, file) in files.iter().enumerate() {
            // A file that does not parse adds nothing here; `parse` reports it.
            let Ok(table) = file.text.parse::<toml::Table>() else {
                continue;
            };
            for (list, origins) in LISTS.iter().zip(&mut lists) {
                let count = lookup(&table, list)
                    .and_then(toml::Value::as_array)
                    .map_or(0, Vec::len);
                origins.extend((0..count).map(|local| (f, local)));
            }
            for (name, holders) in SINGLE_TABLES.iter().zip(&mut tables) {
                if table.contains_key(*name) {
                    holders.push(f);
                }
            }
        }
        ConfigText {
            files,
            lists,
            tables,
        }
    }

    /// The files, in merging order.
    pub fn files(&self) -> &[ConfigFile] {
        &self.files
    }

    /// The SHA-256 (hex) of every file's name and text: what `periscope_config_hash` shows, and
    /// how a reload tells that nothing changed.
    pub fn sha256(&self) -> String {
        let mut hash = Sha256::new();
        for file in &self.files {
            for part in [&file.name, &file.text] {
                hash.update((part.len() as u64).to_le_bytes());
                hash.update(part.as_bytes());
            }
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses every file strictly and merges them.
    pub fn parse(&self) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut parsed = Vec::new();
        for file in &self.files {
            match periscope_plugin_api::config::parse::<Config>(&file.text) {
                Ok(config) => parsed.push(config),
                Err(e) => problems.push(from_parse(&file.name, e)),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors { problems });
        }
        for (name, holders) in SINGLE_TABLES.iter().zip(&self.tables) {
            if let [first, others @ ..] = holders.as_slice() {
                for &other in others {
                    let also = self.position(*first, name);
                    problems.push(self.problem_in(
                        other,
                        (*name).to_owned(),
                        None,
                        format!("`[{name}]` is already in {also}; only one file may hold it"),
                    ));
                }
            }
        }
        let mut merged = Config {
            host: Default::default(),
            kubernetes: None,
            sources: Default::default(),
            resources: Vec::new(),
            endpoints: Vec::new(),
            exporters: Vec::new(),
            imports: Vec::new(),
        };
        for (f, config) in parsed.into_iter().enumerate() {
            if self.tables[0].first() == Some(&f) {
                merged.host = config.host;
            }
            if self.tables[1].first() == Some(&f) {
                merged.kubernetes = config.kubernetes;
            }
            merged.sources.files.extend(config.sources.files);
            merged.resources.extend(config.resources);
            merged.endpoints.extend(config.endpoints);
            merged.exporters.extend(config.exporters);
        }
        problems.extend(self.names_in_two_files(
            "exporters",
            merged.exporters.iter().map(|e| e.name.get_ref()),
        ));
        problems.extend(self.names_in_two_files(
            "endpoints",
            merged.endpoints.iter().map(|e| e.name.get_ref()),
        ));
        if problems.is_empty() {
            Ok(merged)
        } else {
            Err(self.errors(problems))
        }
    }

    /// A problem about `key` (as numbered in the merged config) at byte `span` of the file that
    /// key comes from; without a span, at the key itself when the file has it.
    pub fn problem(
        &self,
        key: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Problem {
        let (file, key) = self.locate(&key.into());
        self.problem_in(file, key, span, message)
    }

    /// The span of `key` (as numbered in the merged config) in the file it comes from.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        let (file, key) = self.locate(key);
        key_span(&self.files.get(file)?.text, &key)
    }

    /// Wraps problems into one error, sorted by file, then position.
    pub fn errors(&self, mut problems: Vec<Problem>) -> ConfigErrors {
        let order = |name: &str| self.files.iter().position(|f| f.name == name);
        problems.sort_by_key(|p| (order(&p.file), p.line, p.column));
        ConfigErrors { problems }
    }

    /// A problem at local `key` of file `file`.
    fn problem_in(
        &self,
        file: usize,
        key: String,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Problem {
        let (name, text) = self
            .files
            .get(file)
            .map_or(("", ""), |f| (f.name.as_str(), f.text.as_str()));
        let span = span
            .filter(|span| span.end > 0)
            .or_else(|| key_span(text, &key));
        let (line, column) = span.map_or((0, 0), |span| line_column(text, span.start));
        Problem {
            file: name.to_owned(),
            key,
            line,
            column,
            message: message.into(),
        }
    }

    /// `file:line:column` of local `key` in file `file`, for messages naming a second place.
    fn position(&self, file: usize, key: &str) -> String {
        let p = self.problem_in(file, key.to_owned(), None, "");
        format!("{}:{}:{}", p.file, p.line, p.column)
    }

    /// The file a merged key comes from, and the key as that file numbers it.
    fn locate(&self, key: &str) -> (usize, String) {
        for (list, origins) in LISTS.iter().zip(&self.lists) {
            let Some(rest) = key.strip_prefix(list).and_then(|r| r.strip_prefix('[')) else {
                continue;
            };
            let Some((index, tail)) = rest.split_once(']') else {
                continue;
            };
            if let Some(&(file, local)) = index.parse().ok().and_then(|i: usize| origins.get(i)) {
                return (file, format!("{list}[{local}]{tail}"));
            }
        }
        for (name, holders) in SINGLE_TABLES.iter().zip(&self.tables) {
            let inside = key == *name || key.starts_with(&format!("{name}."));
            if let (true, Some(&file)) = (inside, holders.first()) {
                return (file, key.to_owned());
            }
        }
        (0, key.to_owned())
    }

    /// A problem for every name of `list` used again in another file, naming both places. Names
    /// used twice in one file are the checker's to report, as they are without a directory.
    fn names_in_two_files<'a>(
        &self,
        list: &str,
        names: impl Iterator<Item = &'a String>,
    ) -> Vec<Problem> {
        let index = LISTS.iter().position(|l| *l == list).unwrap_or_default();
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        let mut problems = Vec::new();
        for (i, name) in names.enumerate() {
            let here = self.lists[index].get(i).map_or(0, |(file, _)| *file);
            match seen.get(name.as_str()) {
                Some(&first) if self.lists[index][first].0 != here => {
                    let also = self.located_position(&format!("{list}[{first}].name"));
                    problems.push(self.problem(
                        format!("{list}[{i}].name"),
                        None,
                        format!("{name:?} is already the name of an entry in {also}"),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(name, i);
                }
            }
        }
        problems
    }

    /// `file:line:column` of a merged key.
    fn located_position(&self, key: &str) -> String {
        let (file, local) = self.locate(key);
        self.position(file, &local)
    }
}

/// The value at dotted `key` (no indexes) of `table`.
fn lookup<'t>(table: &'t toml::Table, key: &str) -> Option<&'t toml::Value> {
    let (first, rest) = key.split_once('.').unwrap_or((key, ""));
    let value = table.get(first)?;
    if rest.is_empty() {
        Some(value)
    } else {
        lookup(value.as_table()?, rest)
    }
}

/// `files`, each followed by the TOML its `[[imports]]` convert to, as a file named after the
/// imported one. Paths are relative to the importing file's directory.
fn with_imports(files: Vec<ConfigFile>) -> Result<Vec<ConfigFile>, ConfigErrors> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        // A file that does not parse imports nothing; `parse` reports it.
        let table = file.text.parse::<toml::Table>().ok();
        let imports = table
            .as_ref()
            .and_then(|t| t.get("imports"))
            .and_then(toml::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let dir = Path::new(&file.name)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let name = file.name.clone();
        out.push(file);
        for (i, import) in imports.iter().enumerate() {
            let Some(crs) = import
                .get("kube_state_metrics_crs")
                .and_then(toml::Value::as_str)
            else {
                continue;
            };
            let path = dir.join(crs);
            let shown = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    let key = format!("imports[{i}].kube_state_metrics_crs");
                    let text = &out.last().map_or("", |f| f.text.as_str());
                    let (line, column) =
                        key_span(text, &key).map_or((0, 0), |span| line_column(text, span.start));
                    problems.push(Problem {
                        file: name.clone(),
                        key,
                        line,
                        column,
                        message: format!("cannot read {shown}: {e}"),
                    });
                    continue;
                }
            };
            match crate::import::kube_state_metrics::convert(&shown, &text) {
                Ok(toml) => out.push(ConfigFile {
                    name: shown,
                    text: toml,
                }),
                Err(errors) => problems.extend(errors.problems),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors { problems })
    }
}

/// Reads one config file, which must be UTF-8.
fn read_file(path: &Path) -> Result<ConfigFile, ConfigErrors> {
    let name = path.display().to_string();
    let error = |line, column, message| ConfigErrors {
        problems: vec![Problem {
            file: name.clone(),
            key: String::new(),
            line,
            column,
            message,
        }],
    };
    let bytes = std::fs::read(path)
        .map_err(|e| error(0, 0, format!("cannot read the config file: {e}")))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(ConfigFile { name, text }),
        Err(e) => {
            // At the first byte that is not UTF-8.
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]);
            let (line, column) = line_column(&prefix, valid);
            Err(error(
                line,
                column,
                "the config file is not UTF-8 text".to_owned(),
            ))
        }
    }
}

fn from_parse(file: &str, e: ConfigError) -> Problem {
    Problem {
        file: file.to_owned(),
        key: e.key,
        line: e.line,
        column: e.column,
        message: e.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const EXPORTER_A: &str = "[[exporters]]\nname = \"a\"\nplugin = \"file\"\n";
    const RESOURCE: &str = "[[resources]]\nversion = \"v1\"\nkind = \"ConfigMap\"\n";

    #[test]
    fn a_non_utf8_file_is_refused_at_its_first_bad_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, b"[host]\nlisten = \"a\xffb\"\n").unwrap();
        let err = ConfigText::read(&path).unwrap_err();
        assert_eq!(err.problems[0].line, 2);
        assert_eq!(err.problems[0].column, 12);
        assert!(
            err.to_string()
                .ends_with("bad.toml:2:12: the config file is not UTF-8 text"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_merges_its_toml_files_in_name_order() {
        let dir = dir(&[
            ("b.toml", &format!("{RESOURCE}{EXPORTER_A}")),
            (
                "a.toml",
                "[host]\nflush_interval = \"1s\"\n[[exporters]]\nname = \"z\"\nplugin = \"file\"\n",
            ),
            ("notes.txt", "not toml"),
            (".hidden.toml", "not = [toml"),
        ]);
        let text = ConfigText::read(dir.path()).unwrap();
        assert_eq!(text.files().len(), 2);
        let config = text.parse().unwrap();
        let names: Vec<_> = config
            .exporters
            .iter()
            .map(|e| e.name.get_ref().as_str())
            .collect();
        assert_eq!(names, ["z", "a"]);
        assert_eq!(config.resources.len(), 1);
        assert_eq!(
            config.host.flush_interval.0,
            std::time::Duration::from_secs(1)
        );
    }

    #[test]
    fn a_problem_is_placed_in_the_file_and_at_the_local_index_of_its_entry() {
        let dir = dir(&[
            ("a.toml", EXPORTER_A),
            ("b.toml", &format!("\n\n{RESOURCE}{RESOURCE}")),
        ]);
        let text = ConfigText::read(dir.path()).unwrap();
        let p = text.problem("resources[1].kind", None, "bad");
        assert!(p.file.ends_with("b.toml"), "{p}");
        assert_eq!((p.key.as_str(), p.line), ("resources[1].kind", 8));
        let p = text.problem("exporters[0].plugin", None, "bad");
        assert!(p.file.ends_with("a.toml"), "{p}");
        assert_eq!(p.line, 3);
    }

    #[test]
    fn host_in_two_files_and_a_name_in_two_files_name_both_places() {
        let dir = dir(&[
            ("a.toml", &format!("[host]\n{EXPORTER_A}")),
            ("b.toml", &format!("\n[host]\n\n{EXPORTER_A}")),
        ]);
        let err = ConfigText::read(dir.path()).unwrap().parse().unwrap_err();
        let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines[0].contains("b.toml:2:2: `host`: `[host]` is already in"),
            "{err}"
        );
        assert!(lines[0].contains("a.toml:1:2"), "{err}");
        assert!(
            lines[1].contains("b.toml:5:1: `exporters[0].name`"),
            "{err}"
        );
        assert!(lines[1].contains("a.toml:3:1"), "{err}");
    }

    #[test]
    fn an_empty_directory_is_an_error() {
        let dir = dir(&[("x.yaml", "")]);
        let err = ConfigText::read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("holds no `*.toml` file"), "{err}");
    }

    #[test]
    fn an_imported_crs_config_joins_the_resources_and_changes_the_hash() {
        let crs = "spec:\n  resources:\n    - groupVersionKind: { group: g.io, version: v1, kind: A }\n      metrics:\n        - name: x\n          each:\n            type: Gauge\n            gauge: { path: [spec, x] }\n";
        let dir = dir(&[
            (
                "a.toml",
                &format!("{RESOURCE}[[imports]]\nkube_state_metrics_crs = \"crs.yaml\"\n"),
            ),
            ("crs.yaml", crs),
        ]);
        let text = ConfigText::read(&dir.path().join("a.toml")).unwrap();
        let config = text.parse().unwrap();
        assert_eq!(config.resources.len(), 2);
        assert_eq!(config.resources[1].kind, "A");
        let p = text.problem("resources[1].kind", None, "bad");
        assert!(p.file.ends_with("crs.yaml"), "{p}");
        let before = text.sha256();
        std::fs::write(
            dir.path().join("crs.yaml"),
            crs.replace("[spec, x]", "[spec, y]"),
        )
        .unwrap();
        let after = ConfigText::read(&dir.path().join("a.toml"))
            .unwrap()
            .sha256();
        assert_ne!(before, after);
        std::fs::write(dir.path().join("crs.yaml"), "spec:\n  resourcez: []\n").unwrap();
        let err = ConfigText::read(&dir.path().join("a.toml")).unwrap_err();
        assert!(err.to_string().contains("crs.yaml:2:"), "{err}");
    }

    #[test]
    fn the_hash_changes_with_any_file() {
        let one = ConfigText::one("a", "x = 1");
        assert_eq!(one.sha256(), ConfigText::one("a", "x = 1").sha256());
        assert_ne!(one.sha256(), ConfigText::one("a", "x = 2").sha256());
        assert_ne!(one.sha256(), ConfigText::one("b", "x = 1").sha256());
    }
}

//! The line a validation error's field path points at, so that an admin with a 200-rule file
//! reads `filter.rules[41].action: ... (line 388)` and jumps there, rather than counting
//! `[[filter.rules]]` headers (and from 0, where `tandemctl rules` counts from 1).
//!
//! The path is the one [`Report`](super::validate) builds: keys joined by `.`, array indices as
//! `[N]`. The walk goes as deep as the document has the path; a missing field points at the
//! table it is missing from.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// The document parsed once, with the spans of its keys and values kept, and where its lines
/// start: a file of 10,000 broken rules gets its 10,000 lines by binary search, not by
/// counting newlines from the top for each (seconds on the daemon's control loop, which feeds
/// the watchdog).
pub(super) struct Locator<'t> {
    doc: Option<ImDocument<&'t str>>,
    /// Byte offset of each line's first byte (the first is 0).
    line_starts: Vec<usize>,
}

impl<'t> Locator<'t> {
    /// `text` is the file serde already read as valid TOML; if toml_edit disagrees, nothing is
    /// located (the errors keep their paths).
    pub(super) fn new(text: &'t str) -> Locator<'t> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator {
            doc: ImDocument::parse(text).ok(),
            line_starts,
        }
    }

    /// The 1-based line of the deepest element of `path` the file has, if any has a span.
    pub(super) fn line(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let span = walk(doc.as_table(), &segments(path)?)?;
        // The lines starting at or before the span: its own is the last of them.
        Some(self.line_starts.partition_point(|&s| s <= span.start))
    }
}

/// One step of a path: a table's key or an array's index.
#[derive(Debug, PartialEq)]
enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

/// `a.b[2].c` as `[Key a, Key b, Index 2, Key c]`; `None` if a bracket does not hold a number.
fn segments(path: &str) -> Option<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some(open) = rest.strip_prefix('[') {
            let close = open.find(']')?;
            steps.push(Step::Index(open[..close].parse().ok()?));
            rest = &open[close + 1..];
        }
    }
    Some(steps)
}

/// The span of the deepest element reached, or of the nearest enclosing one that has a span
/// (tables made implicit by `[[filter.rules]]`, such as `filter`, have none). Not the root's:
/// line 1 for a section the file lacks would send the reader to the wrong place.
fn walk(root: &Table, steps: &[Step<'_>]) -> Option<Range<usize>> {
    let mut best = None;
    let mut at = Node::Table(root);
    for step in steps {
        let Some(next) = at.step(step) else {
            break;
        };
        if let Some(span) = next.span() {
            best = Some(span);
        }
        at = next;
    }
    best
}

/// Where the walk stands: TOML's tables, arrays of tables and inline arrays and tables.
#[derive(Clone, Copy)]
enum Node<'d> {
    Table(&'d Table),
    Item(&'d Item),
    Value(&'d Value),
}

impl<'d> Node<'d> {
    fn step(self, step: &Step<'_>) -> Option<Node<'d>> {
        match (self, step) {
            (Node::Table(t), Step::Key(k)) => t.get(k).map(Node::Item),
            (Node::Item(Item::Table(t)), _) => Node::Table(t).step(step),
            (Node::Item(Item::Value(v)), _) => Node::Value(v).step(step),
            (Node::Item(Item::ArrayOfTables(a)), Step::Index(i)) => a.get(*i).map(Node::Table),
            (Node::Value(Value::InlineTable(t)), Step::Key(k)) => t.get(k).map(Node::Value),
            (Node::Value(Value::Array(a)), Step::Index(i)) => a.get(*i).map(Node::Value),
            _ => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Table(t) => t.span(),
            Node::Item(i) => i.span(),
            Node::Value(v) => v.span(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
[system]
hostname = \"fw\"

[[filter.rules]]
action = \"pass\"

[[filter.rules]]
interface = \"lan\"
action = \"passs\"
source = { address = \"10.0.0.1\", port = 80 }
ports = [1, 2,
  3]
";

    #[test]
    fn paths_split_into_keys_and_indices() {
        assert_eq!(
            segments("filter.rules[1].source.port"),
            Some(vec![
                Step::Key("filter"),
                Step::Key("rules"),
                Step::Index(1),
                Step::Key("source"),
                Step::Key("port"),
            ])
        );
        assert_eq!(segments("a[x]"), None);
        assert_eq!(segments("a[1"), None);
    }

    #[test]
    fn a_field_is_found_on_its_line() {
        let l = Locator::new(TEXT);
        assert_eq!(l.line("system.hostname"), Some(2));
        assert_eq!(l.line("filter.rules[0].action"), Some(5));
        assert_eq!(l.line("filter.rules[1].action"), Some(9));
        assert_eq!(l.line("filter.rules[1].source.port"), Some(10));
        assert_eq!(l.line("filter.rules[1].ports[2]"), Some(12));
    }

    #[test]
    fn a_missing_field_points_at_its_table() {
        let l = Locator::new(TEXT);
        // The second rule's header.
        assert_eq!(l.line("filter.rules[1].protocol"), Some(7));
        assert_eq!(l.line("system.state_limit"), Some(1));
        // A rule the file does not have: the array of rules, from its first header.
        assert_eq!(l.line("filter.rules[9].action"), Some(4));
        // A section the file does not have: the root has no span.
        assert_eq!(l.line("nat.outbound.rules[0]"), None);
    }

    #[test]
    fn lines_count_from_1_with_crlf_and_a_field_on_the_last_line() {
        let l = Locator::new("a = 1\r\n\r\n[t]\r\nb = 2");
        assert_eq!(l.line("a"), Some(1));
        assert_eq!(l.line("t"), Some(3));
        assert_eq!(l.line("t.b"), Some(4));
    }

    #[test]
    fn text_toml_edit_cannot_parse_locates_nothing() {
        assert_eq!(Locator::new("a = [").line("a"), None);
    }
}

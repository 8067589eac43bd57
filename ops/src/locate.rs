//! Finds the line of each field in a YAML file, so that validation errors
//! can say where to look (`nodes[1].address (line 14)`).
//!
//! serde gives values without positions; this walks the same text once
//! more with a YAML event parser and records, for every mapping key and
//! sequence item, its dotted path and the line it starts on.

use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};
use std::collections::HashMap;

enum Frame {
    Map { key: Option<String>, want_key: bool },
    Seq { index: usize },
}

#[derive(Default)]
struct Walker {
    frames: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Walker {
    fn path(&self) -> String {
        let mut p = String::new();
        for f in &self.frames {
            match f {
                Frame::Map { key: Some(k), .. } => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(k);
                }
                Frame::Map { key: None, .. } => {}
                Frame::Seq { index } => p.push_str(&format!("[{index}]")),
            }
        }
        p
    }

    /// The parent consumed one value.
    fn value_done(&mut self) {
        match self.frames.last_mut() {
            Some(Frame::Map { want_key, .. }) => *want_key = true,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }

    fn note_item(&mut self, line: usize) {
        if let Some(Frame::Seq { .. }) = self.frames.last() {
            let p = self.path();
            self.lines.entry(p).or_insert(line);
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Walker {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let line = span.start.line();
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map {
                    key,
                    want_key: want @ true,
                }) = self.frames.last_mut()
                {
                    *key = Some(value.into_owned());
                    *want = false;
                    let p = self.path();
                    self.lines.entry(p).or_insert(line);
                } else {
                    self.note_item(line);
                    self.value_done();
                }
            }
            Event::MappingStart(..) => {
                self.note_item(line);
                self.frames.push(Frame::Map {
                    key: None,
                    want_key: true,
                });
            }
            Event::SequenceStart(..) => {
                self.note_item(line);
                self.frames.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
                self.value_done();
            }
            Event::Alias(..) => {
                self.note_item(line);
                self.value_done();
            }
            _ => {}
        }
    }
}

/// Maps each field path of `text` to its 1-based line. Text that does not
/// parse yields what was found before the error.
pub fn field_lines(text: &str) -> HashMap<String, usize> {
    let mut w = Walker::default();
    let _ = Parser::new_from_str(text).load(&mut w, false);
    w.lines
}

/// The line of `field`, or of its nearest ancestor present in the file.
pub fn line_of(lines: &HashMap<String, usize>, field: &str) -> Option<usize> {
    let mut f = field;
    loop {
        if let Some(l) = lines.get(f) {
            return Some(*l);
        }
        let cut = f.rfind(['.', '['])?;
        f = &f[..cut];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_items_get_their_lines() {
        let text = "\
listeners:
  http: 127.0.0.1:1
nodes:
  - name: a
    address: x
  - name: b
    address: y
health_check: {rise: 0, fall: 2}
";
        let l = field_lines(text);
        assert_eq!(l["listeners"], 1);
        assert_eq!(l["listeners.http"], 2);
        assert_eq!(l["nodes"], 3);
        assert_eq!(l["nodes[0]"], 4);
        assert_eq!(l["nodes[1].address"], 7);
        assert_eq!(l["health_check.rise"], 8);
        assert_eq!(line_of(&l, "nodes[1].weight"), Some(6));
        assert_eq!(line_of(&l, "flap_damping.hold"), None);
    }
}

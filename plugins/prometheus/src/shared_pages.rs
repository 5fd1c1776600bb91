//! Pages being served, shared between the scrapes of one state.
//!
//! Each scrape used to render its own copy of the page and hold it until its client had read it:
//! 32 clients that do not read held 32 copies. While any response still holds the series of a
//! state in a format, a scrape of the same state in the same format now takes the same bytes; the
//! end of the page (the exporter's own metrics, current at each scrape) is rendered per scrape.
//! Nothing is kept once no response holds it, so an idle exporter holds no page.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use bytes::Bytes;

use crate::format::Format;
use crate::render::render_series;
use crate::state::State;
use crate::stats::Stats;

/// The series of the pages some response still holds.
#[derive(Debug, Default)]
pub struct SharedPages {
    pages: Mutex<Vec<SharedPage>>,
}

#[derive(Debug)]
struct SharedPage {
    state: Weak<State>,
    format: Format,
    series: Weak<Vec<u8>>,
}

/// Bytes that borrow a shared page.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl SharedPages {
    /// The series of `state` in `format`: those a response still holds, or rendered now (and the
    /// render recorded in `stats`). Renders run one at a time, so concurrent scrapes of a new
    /// state wait for one render instead of making one copy each.
    pub fn series(&self, state: &Arc<State>, format: Format, stats: &Stats) -> Bytes {
        let mut pages = self.pages.lock().unwrap_or_else(PoisonError::into_inner);
        pages.retain(|page| page.series.strong_count() > 0);
        let held = pages
            .iter()
            .filter(|page| page.format == format && page.state.as_ptr() == Arc::as_ptr(state))
            .find_map(|page| page.series.upgrade());
        let series = match held {
            Some(series) => series,
            None => {
                let start = Instant::now();
                let mut out = Vec::new();
                let rendered = render_series(state, format, &mut out);
                let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.rendered(micros, rendered.conflicts);
                let series = Arc::new(out);
                pages.push(SharedPage {
                    state: Arc::downgrade(state),
                    format,
                    series: Arc::downgrade(&series),
                });
                series
            }
        };
        Bytes::from_owner(Shared(series))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_shared_while_held_and_freed_after() {
        let pages = SharedPages::default();
        let stats = Stats::default();
        let state = Arc::new(State::default());
        let first = pages.series(&state, Format::Text, &stats);
        let second = pages.series(&state, Format::Text, &stats);
        assert_eq!(first.as_ptr(), second.as_ptr(), "one copy for both");
        let other_format = pages.series(&state, Format::OpenMetrics { v0_0_1: false }, &stats);
        drop((first, second, other_format));
        // Nothing held: the next scrape renders again, and the list forgets the old pages.
        let again = pages.series(&state, Format::Text, &stats);
        assert_eq!(pages.pages.lock().unwrap().len(), 1);
        drop(again);
        let newer = Arc::new(State::default());
        let kept = pages.series(&state, Format::Text, &stats);
        let fresh = pages.series(&newer, Format::Text, &stats);
        assert_eq!(
            pages.pages.lock().unwrap().len(),
            2,
            "another state, another page"
        );
        drop((kept, fresh));
    }
}

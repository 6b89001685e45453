//! A page's one live stream (server-sent events): where it stands, and (with the `browser`
//! feature) the follower that keeps it open, reconnecting with backoff and saying so.

/// Where a live stream stands, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// No stream yet: the page shows the state as the server rendered it. What a browser
    /// without JavaScript keeps.
    AsLoaded,
    Connecting,
    Live,
    /// Lost; the next attempt is in this many seconds.
    Retrying(u32),
    /// The server said it is restarting; the page reconnects to the next one.
    Restarting,
}

/// 0.5 s, 1 s, 2 s … up to 8 s between attempts.
pub fn backoff_ms(attempt: u32) -> u32 {
    500u32.saturating_mul(1 << attempt.min(4))
}

#[cfg(feature = "browser")]
pub use browser::{Follower, follow};

#[cfg(feature = "browser")]
mod browser {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    use web_sys::{EventSource, MessageEvent};

    use super::{Connection, backoff_ms};

    /// Keeps its stream open, and reopens it after a loss, until it is dropped.
    pub struct Follower(Rc<Shared>);

    impl Drop for Follower {
        fn drop(&mut self) {
            self.0.stopped.set(true);
            if let Some(stream) = self.0.stream.borrow_mut().take() {
                stream.source.close();
            }
        }
    }

    struct Shared {
        url: &'static str,
        on_state: Box<dyn Fn(Connection)>,
        on_message: Box<dyn Fn(String)>,
        stream: RefCell<Option<Stream>>,
        stopped: Cell<bool>,
    }

    struct Stream {
        source: EventSource,
        _on_open: Closure<dyn FnMut()>,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_error: Closure<dyn FnMut()>,
    }

    /// Follows the server-sent events at `url`, handing each message to `on_message` and each
    /// change of state to `on_state`, until the returned [`Follower`] is dropped.
    pub fn follow(
        url: &'static str,
        on_state: impl Fn(Connection) + 'static,
        on_message: impl Fn(String) + 'static,
    ) -> Follower {
        let shared = Rc::new(Shared {
            url,
            on_state: Box::new(on_state),
            on_message: Box::new(on_message),
            stream: RefCell::new(None),
            stopped: Cell::new(false),
        });
        open(&shared, 0);
        Follower(shared)
    }

    fn open(shared: &Rc<Shared>, attempt: u32) {
        if shared.stopped.get() {
            return;
        }
        let Ok(source) = EventSource::new(shared.url) else {
            retry(shared, attempt);
            return;
        };
        let weak = Rc::downgrade(shared);
        let on_open = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                (shared.on_state)(Connection::Live);
            }
        });
        let weak = Rc::downgrade(shared);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let (Some(shared), Some(text)) = (weak.upgrade(), event.data().as_string()) {
                (shared.on_message)(text);
            }
        });
        let weak = Rc::downgrade(shared);
        let on_error = Closure::<dyn FnMut()>::new(move || {
            // EventSource would retry at a fixed pace; close it and back off instead.
            if let Some(shared) = weak.upgrade() {
                if let Some(stream) = shared.stream.borrow_mut().take() {
                    stream.source.close();
                }
                retry(&shared, attempt + 1);
            }
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        *shared.stream.borrow_mut() = Some(Stream {
            source,
            _on_open: on_open,
            _on_message: on_message,
            _on_error: on_error,
        });
    }

    fn retry(shared: &Rc<Shared>, attempt: u32) {
        if shared.stopped.get() {
            return;
        }
        let delay = backoff_ms(attempt);
        (shared.on_state)(Connection::Retrying(delay.div_ceil(1000)));
        let weak = Rc::downgrade(shared);
        let again = Closure::once_into_js(move || {
            if let Some(shared) = weak.upgrade() {
                open(&shared, attempt);
            }
        });
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(
                again.unchecked_ref(),
                delay as i32,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_eight_seconds() {
        let delays: Vec<u32> = (0..7).map(backoff_ms).collect();
        assert_eq!(delays, [500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
    }
}

//! One app in the browser: a click on a link to one of the app's pages (Tasks, History, a
//! task's detail, Dashboard) fetches that page and swaps it in — the header and `<main>` —
//! instead of loading a new document, then hydrates the page's islands. The window, its WASM
//! and the one live stream ([`crate::live`]) stay. The links are plain links: before the WASM
//! has loaded, without JavaScript, with a modifier key or when anything goes wrong, the
//! browser follows them itself.

#[cfg(feature = "hydrate")]
pub use browser::install;

/// Whether the app renders `path` as one of its pages.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn in_app(path: &str) -> bool {
    matches!(path, "/" | "/history" | "/dashboard")
        || path
            .strip_prefix("/tasks/")
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(feature = "hydrate")]
mod browser {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{
        Document, DomParser, Element, HtmlAnchorElement, MouseEvent, SupportedType, Url,
    };

    use super::in_app;

    /// The page parts that differ between the app's pages; the rest of the document stays.
    const SWAPPED: [&str; 2] = ["header.topbar", "main"];

    /// Starts following clicks and the back and forward buttons.
    pub fn install() {
        let Some(window) = web_sys::window() else {
            return;
        };
        let on_click = Closure::<dyn FnMut(MouseEvent)>::new(|event: MouseEvent| {
            if let Some(href) = followed_link(&event) {
                event.prevent_default();
                wasm_bindgen_futures::spawn_local(go(href, true));
            }
        });
        let on_pop = Closure::<dyn FnMut()>::new(|| {
            if let Some(href) = web_sys::window().and_then(|w| w.location().href().ok()) {
                wasm_bindgen_futures::spawn_local(go(href, false));
            }
        });
        // Bubbling: a page's own handlers see the click first and may prevent it.
        let _ = window.add_event_listener_with_callback("click", on_click.as_ref().unchecked_ref());
        let _ =
            window.add_event_listener_with_callback("popstate", on_pop.as_ref().unchecked_ref());
        // For the life of the page.
        on_click.forget();
        on_pop.forget();
    }

    /// The address of the app page a plain left click on a link goes to, if it is one.
    fn followed_link(event: &MouseEvent) -> Option<String> {
        if event.default_prevented()
            || event.button() != 0
            || event.meta_key()
            || event.ctrl_key()
            || event.shift_key()
            || event.alt_key()
        {
            return None;
        }
        let anchor: HtmlAnchorElement = event
            .target()?
            .dyn_into::<Element>()
            .ok()?
            .closest("a[href]")
            .ok()??
            .dyn_into()
            .ok()?;
        if anchor.has_attribute("download") || !anchor.target().is_empty() {
            return None;
        }
        let url = Url::new(&anchor.href()).ok()?;
        let here = web_sys::window()?.location().origin().ok()?;
        (url.origin() == here && in_app(&url.pathname())).then(|| url.href())
    }

    /// Shows the page at `href` in place (recording it in the history when `push`), or loads it
    /// as a new document when that fails.
    async fn go(href: String, push: bool) {
        let Some(window) = web_sys::window() else {
            return;
        };
        match swap(&window, &href).await {
            Ok(()) => {
                if push {
                    let _ = window
                        .history()
                        .and_then(|h| h.push_state_with_url(&JsValue::NULL, "", Some(&href)));
                }
                window.scroll_to_with_x_and_y(0.0, 0.0);
            }
            Err(_) => {
                let _ = window.location().assign(&href);
            }
        }
    }

    async fn swap(window: &web_sys::Window, href: &str) -> Result<(), JsValue> {
        let document = window.document().ok_or("no document")?;
        let response: web_sys::Response = JsFuture::from(window.fetch_with_str(href))
            .await?
            .dyn_into()?;
        if !response.ok() {
            return Err("not a page".into());
        }
        let html = JsFuture::from(response.text()?)
            .await?
            .as_string()
            .ok_or("not text")?;
        let parsed = DomParser::new()?.parse_from_string(&html, SupportedType::TextHtml)?;
        let mut parts = Vec::new();
        for selector in SWAPPED {
            let old = document
                .query_selector(selector)?
                .ok_or("no such part here")?;
            let new = parsed
                .query_selector(selector)?
                .ok_or("no such part there")?;
            parts.push((old, new));
        }
        // The page's stores stop showing the stream; the new page's islands join it.
        crate::live::left_page();
        for (old, new) in parts {
            let new = document.import_node_with_deep(&new, true)?;
            old.replace_with_with_node_1(&new)?;
        }
        document.set_title(&parsed.title());
        hydrate_islands(window, &document)
    }

    /// Hydrates the islands of the page just swapped in, as the island script does at load.
    fn hydrate_islands(window: &web_sys::Window, document: &Document) -> Result<(), JsValue> {
        let hydrate: js_sys::Function =
            js_sys::Reflect::get(window, &"__hydrateIsland".into())?.dyn_into()?;
        let islands = document.query_selector_all("main leptos-island")?;
        for i in 0..islands.length() {
            let Some(island) = islands.item(i) else {
                continue;
            };
            let id = island
                .dyn_ref::<Element>()
                .and_then(|el| el.get_attribute("data-component"))
                .unwrap_or_default();
            hydrate.call2(&JsValue::NULL, &island, &id.into())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_apps_pages_are_swapped_in() {
        for path in ["/", "/history", "/dashboard", "/tasks/12"] {
            assert!(super::in_app(path), "{path}");
        }
        for path in [
            "/tasks/",
            "/tasks/12/output",
            "/tasks/x",
            "/api/events",
            "/pkg/offload.js",
        ] {
            assert!(!super::in_app(path), "{path}");
        }
    }
}

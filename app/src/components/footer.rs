//! The footer: app version and cluster size, asked of the server once the page is live.

use leptos::prelude::*;

use crate::pages::tasks::get_cluster_info;

#[component]
pub fn Footer() -> impl IntoView {
    // Local: asked from the browser after hydration, never during server rendering.
    let info = LocalResource::new(get_cluster_info);
    view! {
        <footer class="footer">
            {move || match info.get() {
                None => String::new(),
                Some(Ok(info)) => format!(
                    "Offload {} · {} workers ({})",
                    info.version,
                    info.workers,
                    info.backend,
                ),
                Some(Err(e)) => format!("Cluster information unavailable: {e}"),
            }}
        </footer>
    }
}

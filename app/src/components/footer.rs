//! The footer: app version and cluster size, rendered by the server with the page.

use leptos::prelude::*;

use crate::api::get_cluster_info;

#[component]
pub fn Footer() -> impl IntoView {
    let info = Resource::new(|| (), |()| get_cluster_info());
    view! {
        <footer class="footer">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match info.await {
                        Ok(info) => format!(
                            "Offload {} · {} workers ({})",
                            info.version,
                            info.workers,
                            info.backend.name(),
                        ),
                        Err(e) => format!("Cluster information unavailable: {e}"),
                    }
                })}
            </Suspense>
        </footer>
    }
}

use leptos::prelude::*;

/// Any path the app does not know: a real 404, not a blank 200.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <leptos_meta::Title text="Page not found · Offload" />
        <section class="not-found">
            <h1>"Page not found"</h1>
            <p><a href="/">"Back to the tasks"</a></p>
        </section>
    }
}

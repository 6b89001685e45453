//! The task page (`/`, or `/?task=NAME`): the seed's app, for every task type. A
//! picker lists the types; the chosen type's form is drawn on the server from its input schema;
//! the session's queue shows live progress, with cancel; results arrive in a terminal. The
//! server renders the whole state, so the page works before (and without) its WASM: the form
//! posts to the server function and comes back to the page. Once hydrated, everything it shows
//! comes from one live stream (see [`crate::live`]) and the form is handled in place. The panel
//! is the page's one island: the only part of it whose code the browser downloads.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::load_task_page;
use crate::components::{ResultsTerminal, TaskQueue};
use crate::live::{Connection, LiveStore};
use model::form::{Field, FieldError, FieldKind, TaskForm, TaskTypeInfo, number_text};
use model::page::{QueuedTask, Quota, SweepForm, TaskPageView, TerminalLine};

/// The page: its state comes from the server first (rendered into the HTML), then live.
#[component]
pub fn TaskPage() -> impl IntoView {
    let query = use_query_map();
    let page = Resource::new(
        move || {
            query.with(|q| {
                // The sweep form sent to have its members counted: every field it sent.
                let count = match q.get("count") {
                    Some(_) => q
                        .clone()
                        .into_iter()
                        .map(|(k, v)| (k.into_owned(), v))
                        .collect(),
                    None => Default::default(),
                };
                (q.get("task"), q.get("sweep"), count)
            })
        },
        |(task, sweep, count)| load_task_page(task, sweep, count),
    );
    view! {
        <section class="task-page">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let view = page.await.unwrap_or_else(|error| TaskPageView {
                        error: Some(
                            error
                                .field_error()
                                .cloned()
                                .unwrap_or_else(|| FieldError::whole(error.to_string())),
                        ),
                        ..TaskPageView::default()
                    });
                    let title = format!("{} Tasks", view.form.title);
                    let batch_form = view.form.clone();
                    let (field_error, form_error) = match view.error {
                        Some(FieldError { field: Some(field), message }) => {
                            (Some((field, message)), None)
                        }
                        Some(FieldError { field: None, message }) => (None, Some(message)),
                        None => (None, None),
                    };
                    view! {
                        <Title text=title />
                        <Picker types=view.types chosen=view.form.task.clone() />
                        <TaskPanel
                            task=view.form.task.clone()
                            title=view.form.title.clone()
                            tasks=view.tasks
                            lines=view.lines
                            error=form_error
                            quota=view.quota
                        >
                            <FormFields form=view.form error=field_error />
                        </TaskPanel>
                        <BatchForm form=batch_form sweep=view.sweep />
                        <RecentBatches />
                    }
                })}
            </Suspense>
        </section>
    }
}

/// A batch of the chosen type: each field takes a value, a range or a list, and the varied
/// ones make the members. A plain form outside the island (the bundle carries none of it),
/// posted to the server function, which lands on the batch's page. Open and filled in with
/// `sweep`, a batch's specification to edit.
#[component]
fn BatchForm(form: TaskForm, sweep: Option<SweepForm>) -> impl IntoView {
    let (values, zip, reuse) = match &sweep {
        Some(sweep) => (sweep.values.clone(), sweep.zip, sweep.reuse),
        None => (form.values, false, false),
    };
    let open = sweep.is_some();
    let from = sweep.as_ref().and_then(|sweep| sweep.batch).map(|batch| {
        view! { <p class="field-help">{format!("Batch {batch}'s specification, to edit")}</p> }
    });
    let counted = sweep.and_then(|sweep| match (sweep.count, sweep.error) {
        (Some(count), _) => Some(
            view! {
                <p class="batch-count" role="status">
                    {format!("{}: SUBMIT BATCH to run them", model::count(count, "member", "members"))}
                </p>
            }
            .into_any(),
        ),
        (None, Some(error)) => Some(
            view! { <p class="input-error" role="alert">{error.message}</p> }.into_any(),
        ),
        (None, None) => None,
    });
    let fields = form
        .fields
        .into_iter()
        .zip(values)
        .map(|(field, value)| {
            let id = format!("batch-{}", field.name);
            let help_id = format!("{id}-help");
            let help = match field.kind {
                FieldKind::Integer { .. } | FieldKind::Number { .. } => {
                    "A value, a range (20..40, 20..40:2, 1..1000*7:log) or a list (1,5,10)"
                }
                _ => "A value, or a list (a,b,c)",
            };
            // Named apart from the task's own field of the same label.
            let name = format!("{} (sweep)", field.label);
            view! {
                <div class="field-group">
                    <div class="field">
                        <label class="field-label" for=id.clone()>{field.label}</label>
                        <input type="text" id=id name=field.name value=value aria-label=name aria-describedby=help_id.clone() autocomplete="off" />
                    </div>
                    <small id=help_id class="field-help">{help}</small>
                </div>
            }
        })
        .collect_view();
    view! {
        <details class="batch-form" open=open>
            <summary>"Sweep: many inputs as one batch"</summary>
            <form method="post" action="/api/submit-batch" aria-label="A batch">
                {from}
                <input type="hidden" name="task" value=form.task />
                {fields}
                <label class="field-label">
                    "Varied fields combine "
                    <select name="combine">
                        <option value="grid" selected=!zip>"as every combination"</option>
                        <option value="zip" selected=zip>"pairwise"</option>
                    </select>
                </label>
                <label class="field-label">
                    <input type="checkbox" name="reuse" checked=reuse />
                    " Reuse earlier results"
                </label>
                {counted}
                // First, so that Enter in a field submits.
                <button type="submit" class="primary">"SUBMIT BATCH"</button>
                // Counted by the server, which checks each member as a submission would: the
                // same words, with or without JavaScript, and nothing runs.
                <button type="submit" formmethod="get" formaction="/" name="count" value="1">
                    "Count members"
                </button>
            </form>
        </details>
    }
}

/// The session's latest batches, each a link to its page, as they were when the page was made
/// (a batch's own page follows it live). Rendered on the server only.
#[component]
fn RecentBatches() -> impl IntoView {
    let batches = Resource::new(|| (), |_| crate::api::load_recent_batches());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let batches = batches.await.unwrap_or_default();
                (!batches.is_empty()).then(|| {
                    let items = batches
                        .into_iter()
                        .map(|batch| {
                            view! {
                                <li data-state=batch.state.clone()>
                                    <a href=format!("/batches/{}", batch.id)>{batch.title}</a>
                                    {format!(" · {} · {}", batch.state, batch.counts)}
                                </li>
                            }
                        })
                        .collect_view();
                    view! {
                        <section class="recent-batches" aria-label="Your batches">
                            <h2>"Your batches"</h2>
                            <ul>{items}</ul>
                        </section>
                    }
                })
            })}
        </Suspense>
    }
}

/// The task types, as links: the URL carries the choice, so it survives a reload, can be
/// shared, and needs no JavaScript. Rendered on the server only (it is not in an island).
#[component]
fn Picker(types: Vec<TaskTypeInfo>, chosen: String) -> impl IntoView {
    let description = types
        .iter()
        .find(|t| t.name == chosen)
        .map(|t| t.description.clone());
    let links = types
        .into_iter()
        .map(|t| {
            let current = (t.name == chosen).then_some("page");
            view! {
                <li>
                    <a href=format!("/?task={}", t.name) aria-current=current>
                        {t.title}
                    </a>
                </li>
            }
        })
        .collect_view();
    view! {
        <nav class="picker" aria-label="Task types">
            <ul>{links}</ul>
        </nav>
        <p class="task-description">{description}</p>
    }
}

/// The page's one island: the form's behaviour, the live queue and the terminal. The form's
/// fields are its children, rendered on the server from the type's schema (so the browser's
/// bundle carries no schema or field code): the island reads them from the page, checks them
/// against the limits they carry (the schema's, as HTML attributes) and posts them in place.
#[island]
fn TaskPanel(
    /// The task type's name, posted with the form.
    task: String,
    title: String,
    tasks: Vec<QueuedTask>,
    lines: Vec<TerminalLine>,
    /// Why the last post was refused, when it was not about one field.
    error: Option<String>,
    /// The session's caps, for the quota line (its counts follow the live queue).
    quota: Quota,
    children: Children,
) -> impl IntoView {
    let store = LiveStore::new(tasks, lines);
    #[cfg(feature = "hydrate")]
    crate::live::connect(store);

    let form_error = RwSignal::new(error);
    let form_ref = NodeRef::<leptos::html::Form>::new();
    // Before hydration this handler does not exist and the browser posts the form itself.
    #[cfg(feature = "hydrate")]
    let on_submit = {
        let queue = crate::form_dom::Queue::new();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            if let Some(form) = form_ref.get_untracked() {
                queue.submit(form, store, form_error);
            }
        }
    };
    #[cfg(not(feature = "hydrate"))]
    let on_submit = |_: leptos::ev::SubmitEvent| {};

    view! {
        <div class="page-head">
            <h1>{format!("{title} Tasks")}</h1>
            <ConnectionBadge connection=store.connection />
        </div>
        <form
            class="submit-row"
            method="post"
            action="/api/submit"
            novalidate
            node_ref=form_ref
            on:submit=on_submit
        >
            <input type="hidden" name="task" value=task.clone() />
            {children()}
            <button type="submit" class="primary">"SUBMIT"</button>
        </form>
        <p id="form-error" class="input-error" role="alert">
            {move || form_error.get()}
        </p>
        <TaskQueue store quota />
        <ResultsTerminal store />
    }
}

/// The form's fields, drawn on the server from the task type's schema: each a labelled
/// control carrying the field's limits as HTML attributes (what the island checks), its help,
/// and its error line (with the message a refused post came back with).
#[component]
fn FormFields(form: TaskForm, error: Option<(String, String)>) -> impl IntoView {
    form.fields
        .into_iter()
        .zip(form.values)
        .map(|(field, value)| {
            let message = error
                .as_ref()
                .filter(|(name, _)| *name == field.name)
                .map(|(_, message)| message.clone());
            view! { <FormField field value message /> }
        })
        .collect_view()
}

#[component]
fn FormField(field: Field, value: String, message: Option<String>) -> impl IntoView {
    let name = field.name.clone();
    // A label `for` its control, not around it: a text area's text would join its name.
    let id = format!("field-{name}");
    let error_id = format!("{name}-error");
    let help_id = format!("{name}-help");
    let described = if field.help.is_some() {
        format!("{error_id} {help_id}")
    } else {
        error_id.clone()
    };
    let attrs = ControlAttrs {
        name: name.clone(),
        id: id.clone(),
        described,
        invalid: message.is_some().to_string(),
        expects: field.expects(),
        required: field.required,
    };
    let control = control(field.kind, attrs, value);
    view! {
        <div class="field-group">
            <div class="field">
                <label class="field-label" for=id>
                    {field.label}
                </label>
                {control}
            </div>
            {field.help.map(|help| view! { <small id=help_id class="field-help">{help}</small> })}
            <p id=error_id class="input-error" role="alert">
                {message}
            </p>
        </div>
    }
}

/// What every control of a field carries, whatever its kind.
struct ControlAttrs {
    name: String,
    id: String,
    /// `aria-describedby`: its error line, and its help when it has some.
    described: String,
    /// `aria-invalid`: whether the last post was refused at this field.
    invalid: String,
    /// `data-expects`: the limits the island checks before posting.
    expects: String,
    required: bool,
}

/// The control for a field of `kind`, showing `value`.
fn control(kind: FieldKind, attrs: ControlAttrs, value: String) -> AnyView {
    match kind {
        // Whole numbers step by 1 (a fraction is a step mismatch); numbers by anything.
        FieldKind::Integer { min, max } => {
            let bounds = (min.map(|m| m.to_string()), max.map(|m| m.to_string()));
            number_input(bounds, ("1", "numeric"), attrs, value)
        }
        FieldKind::Number { min, max } => {
            let bounds = (min.map(number_text), max.map(number_text));
            number_input(bounds, ("any", "decimal"), attrs, value)
        }
        FieldKind::Text { max_len, multiline } => text_input(max_len, multiline, attrs, value),
        FieldKind::Choice { options } => choice(options, attrs, value),
        FieldKind::Toggle => toggle(attrs, value),
    }
}

/// A number input between `(min, max)`, stepping and typed as `(step, inputmode)`.
fn number_input(
    (min, max): (Option<String>, Option<String>),
    (step, mode): (&'static str, &'static str),
    attrs: ControlAttrs,
    value: String,
) -> AnyView {
    view! {
        <input
            type="number"
            name=attrs.name
            id=attrs.id
            min=min
            max=max
            step=step
            inputmode=mode
            autocomplete="off"
            required=attrs.required
            data-expects=attrs.expects
            aria-invalid=attrs.invalid
            aria-describedby=attrs.described
            value=value
        />
    }
    .into_any()
}

/// A text input, or a text area for long text.
fn text_input(
    max_len: Option<u64>,
    multiline: bool,
    attrs: ControlAttrs,
    value: String,
) -> AnyView {
    let maxlength = max_len.map(|m| m.to_string());
    if multiline {
        view! {
            <textarea
                name=attrs.name
                id=attrs.id
                maxlength=maxlength
                rows="3"
                data-expects=attrs.expects
                aria-invalid=attrs.invalid
                aria-describedby=attrs.described
            >
                {value}
            </textarea>
        }
        .into_any()
    } else {
        view! {
            <input
                type="text"
                name=attrs.name
                id=attrs.id
                maxlength=maxlength
                autocomplete="off"
                data-expects=attrs.expects
                aria-invalid=attrs.invalid
                aria-describedby=attrs.described
                value=value
            />
        }
        .into_any()
    }
}

/// A select of `options` (value, label), `value` selected.
fn choice(options: Vec<(String, String)>, attrs: ControlAttrs, value: String) -> AnyView {
    let options = options
        .into_iter()
        .map(|(option, label)| {
            let selected = option == value;
            view! { <option value=option selected=selected>{label}</option> }
        })
        .collect_view();
    view! {
        <select name=attrs.name id=attrs.id aria-invalid=attrs.invalid aria-describedby=attrs.described>
            {options}
        </select>
    }
    .into_any()
}

/// A checkbox, on when `value` is `true`.
fn toggle(attrs: ControlAttrs, value: String) -> AnyView {
    view! {
        <input
            type="checkbox"
            name=attrs.name
            id=attrs.id
            value="true"
            checked=value == "true"
            aria-invalid=attrs.invalid
            aria-describedby=attrs.described
        />
    }
    .into_any()
}

#[component]
fn ConnectionBadge(connection: RwSignal<Connection>) -> impl IntoView {
    let label = move || match connection.get() {
        Connection::AsLoaded => "As of page load: reload to refresh".to_owned(),
        Connection::Connecting => "Connecting…".to_owned(),
        Connection::Live => "Live".to_owned(),
        Connection::Retrying(secs) => format!("Disconnected: retrying in {secs}s"),
        Connection::Restarting => "Server restarting: reconnecting…".to_owned(),
    };
    let class = move || match connection.get() {
        Connection::Live => "connection live",
        Connection::AsLoaded | Connection::Connecting => "connection connecting",
        Connection::Retrying(_) | Connection::Restarting => "connection down",
    };
    view! {
        <span class=class role="status" aria-live="polite">
            {label}
        </span>
    }
}

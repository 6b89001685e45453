//! The task form in the browser, read from and written to the page itself: its fields are
//! rendered on the server (with the schema's limits as HTML attributes), so the bundle carries
//! no schema and no field code, only this. Each refusal reads as the server's would: the same
//! limits, the same words.

use std::cell::Cell;
use std::rc::Rc;

use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Element, FormData, HtmlFormElement, HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement,
    RequestInit, Response, UrlSearchParams, ValidityState,
};

use crate::AppError;
use crate::live::LiveStore;
use model::form::FieldError;
use model::page::{PageUpdate, Submitted};

/// Submissions in order: a click while one is on its way is kept and sent after it, with the
/// values its answer put in the form. So four quick clicks submit n, n+1, n+2 and n+3, as the
/// seed's do.
#[derive(Clone, Default)]
pub struct Queue {
    in_flight: Rc<Cell<bool>>,
    pending: Rc<Cell<u32>>,
}

impl Queue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks and posts `form`, now or after the submissions before it.
    pub fn submit(
        &self,
        form: HtmlFormElement,
        store: LiveStore,
        form_error: RwSignal<Option<String>>,
    ) {
        if self.in_flight.get() {
            self.pending.set(self.pending.get() + 1);
            return;
        }
        self.in_flight.set(true);
        let queue = self.clone();
        leptos::task::spawn_local(async move {
            loop {
                form_error.set(None);
                clear(&form);
                let refused = match check_all(&form) {
                    Err(refused) => Some(refused),
                    Ok(()) => match post(&form).await.and_then(|text| {
                        serde_json::from_str::<Submitted>(&text).map_err(|_| {
                            FieldError::whole("the server's answer was not understood")
                        })
                    }) {
                        Ok(submitted) => {
                            store.apply(PageUpdate::Task(submitted.task), 0.0);
                            if let Some(next) = submitted.next {
                                fill(&form, &next);
                            }
                            None
                        }
                        Err(refused) => Some(refused),
                    },
                };
                if let Some(refused) = refused {
                    show(&form, form_error, refused);
                    queue.pending.set(0);
                }
                match queue.pending.get() {
                    0 => break,
                    n => queue.pending.set(n - 1),
                }
            }
            queue.in_flight.set(false);
        });
    }
}

/// Posts a form to its server function as the browser would (the same fields, URL-encoded),
/// asking for JSON back: the answer's text, or the refusal. The page's forms go through here
/// rather than through the server functions' own client, which the bundle then does without.
pub async fn post(form: &HtmlFormElement) -> Result<String, FieldError> {
    let failed = |why: &str| FieldError::whole(format!("the submission failed: {why}"));
    let body = FormData::new_with_form(form)
        .and_then(|data| UrlSearchParams::new_with_str_sequence_sequence(&data))
        .map_err(|_| failed("the form could not be read"))?;
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&body);
    let headers = web_sys::Headers::new().map_err(|_| failed("headers"))?;
    let _ = headers.set("Accept", "application/json");
    init.set_headers(&headers);
    let window = web_sys::window().ok_or_else(|| failed("no window"))?;
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(&form.action(), &init))
        .await
        .and_then(JsValue::dyn_into)
        .map_err(|_| failed("the server could not be reached; try again"))?;
    let text = match response.text() {
        Ok(text) => JsFuture::from(text).await.ok().and_then(|t| t.as_string()),
        Err(_) => None,
    }
    .unwrap_or_default();
    if response.ok() {
        Ok(text)
    } else {
        Err(match serde_json::from_str::<AppError>(&text) {
            Ok(AppError::InvalidInput(refused)) => refused,
            Ok(other) => FieldError::whole(other.to_string()),
            Err(_) => failed(&format!("the server answered {}", response.status())),
        })
    }
}

/// The form's named controls, but the task type's hidden field.
fn controls(form: &HtmlFormElement) -> Vec<Element> {
    let elements = form.elements();
    (0..elements.length())
        .filter_map(|i| elements.item(i))
        .filter(|el| el.get_attribute("name").is_some_and(|name| name != "task"))
        .collect()
}

/// Every field against its limits: the first refusal.
fn check_all(form: &HtmlFormElement) -> Result<(), FieldError> {
    for el in controls(form) {
        let name = el.get_attribute("name").unwrap_or_default();
        if let Some(input) = el.dyn_ref::<HtmlInputElement>() {
            if input.type_() != "checkbox" {
                check(&name, &el, &input.value(), Some(input.validity()))?;
            }
        } else if let Some(area) = el.dyn_ref::<HtmlTextAreaElement>() {
            check(&name, &el, &area.value(), None)?;
        }
    }
    Ok(())
}

/// One control against the limits it carries, in the words of `model::form::Field::parse`.
fn check(
    name: &str,
    el: &Element,
    value: &str,
    validity: Option<ValidityState>,
) -> Result<(), FieldError> {
    let attr = |key: &str| el.get_attribute(key).unwrap_or_default();
    let refuse = |message: String| Err(FieldError::at(name, message));
    // Counted here: `maxlength` only stops typing, not a pasted or scripted value.
    if let Some(max) = el
        .get_attribute("maxlength")
        .and_then(|m| m.parse::<usize>().ok())
    {
        let len = value.chars().count();
        if len > max {
            return refuse(format!(
                "{name} must be at most {max} characters (got {len})."
            ));
        }
    }
    let Some(validity) = validity else {
        return Ok(());
    };
    if validity.bad_input() {
        refuse(format!("{name} must be {}.", attr("data-expects")))
    } else if validity.value_missing() {
        refuse(format!("Enter {name}: {}.", attr("data-expects")))
    } else if validity.step_mismatch() {
        refuse(format!("{name} must be a whole number (got \"{value}\")."))
    } else if validity.range_underflow() {
        refuse(format!(
            "{name} must be {} or more (got {value}).",
            attr("min")
        ))
    } else if validity.range_overflow() {
        refuse(format!(
            "{name} must be at most {} (got {value}).",
            attr("max")
        ))
    } else {
        Ok(())
    }
}

/// Puts the values the server suggests next into the form.
fn fill(form: &HtmlFormElement, next: &[(String, String)]) {
    for el in controls(form) {
        let name = el.get_attribute("name").unwrap_or_default();
        let Some((_, value)) = next.iter().find(|(field, _)| *field == name) else {
            continue;
        };
        if let Some(input) = el.dyn_ref::<HtmlInputElement>() {
            if input.type_() == "checkbox" {
                input.set_checked(value == "true");
            } else {
                input.set_value(value);
            }
        } else if let Some(area) = el.dyn_ref::<HtmlTextAreaElement>() {
            area.set_value(value);
        } else if let Some(select) = el.dyn_ref::<HtmlSelectElement>() {
            select.set_value(value);
        }
    }
}

/// Clears every field's error.
fn clear(form: &HtmlFormElement) {
    for el in controls(form) {
        let _ = el.set_attribute("aria-invalid", "false");
        let name = el.get_attribute("name").unwrap_or_default();
        if let Some(line) = error_line(form, &name) {
            line.set_text_content(None);
        }
    }
}

/// A refusal at its field, or above the queue when it is about the whole input (or about a
/// field this form does not show).
fn show(form: &HtmlFormElement, form_error: RwSignal<Option<String>>, refused: FieldError) {
    let at = refused.field.as_deref().and_then(|field| {
        let control = controls(form)
            .into_iter()
            .find(|el| el.get_attribute("name").as_deref() == Some(field))?;
        Some((control, error_line(form, field)?))
    });
    match at {
        Some((control, line)) => {
            let _ = control.set_attribute("aria-invalid", "true");
            line.set_text_content(Some(&refused.message));
        }
        None => form_error.set(Some(refused.message)),
    }
}

fn error_line(form: &HtmlFormElement, field: &str) -> Option<Element> {
    form.owner_document()?
        .get_element_by_id(&format!("{field}-error"))
}

//! The pages' templates, compiled into the binary. minijinja escapes every value in an
//! `.html` template, so nothing an agent or a reviewer wrote can become markup.

use crate::ConsoleError;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("message.html", include_str!("../templates/message.html")),
    (
        "signed_out.html",
        include_str!("../templates/signed_out.html"),
    ),
    ("choose.html", include_str!("../templates/choose.html")),
    ("queue.html", include_str!("../templates/queue.html")),
    ("action.html", include_str!("../templates/action.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    ("history.html", include_str!("../templates/history.html")),
    ("admin.html", include_str!("../templates/admin.html")),
];

/// The loaded templates.
pub(crate) struct Templates {
    env: minijinja::Environment<'static>,
}

impl Templates {
    pub(crate) fn new() -> Result<Templates, ConsoleError> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Templates { env })
    }

    /// Renders `name` with `ctx`.
    pub(crate) fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, ConsoleError> {
        Ok(self.env.get_template(name)?.render(ctx)?)
    }
}

mod keys;
mod oidc;
mod support;

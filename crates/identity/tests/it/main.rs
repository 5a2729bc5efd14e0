mod keys;
mod oidc;
mod pyjwt;
mod support;

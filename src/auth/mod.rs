//! Identity: password hashing, access tokens and refresh tokens. Access tokens
//! are short-lived HS256 JWTs with a fixed audience per kind of user, so a token
//! issued to a customer can never open the admin API.

pub mod password;
pub mod reset;
pub mod tokens;

"""The cloud's web side (top floor): the app factory (`app`, wiring only), the request context and the
database of a request (`context`), logins and roles (`auth`), the JSON API (`api`), the manager's pages
(`pages/`), the marketplaces' push endpoints (`push`), 1C's exchange and print forms (`onec`) and the
OpenAPI description (`openapi`). Views are thin: they call the domain rooms."""

"""The cloud's web side (top floor): the app factory (`app`, wiring only), the request context and the
database of a request (`context`), logins and roles (`auth`), the JSON API (`api`), the manager's pages
(`pages/`), the print forms (`print_forms`), the marketplaces' push endpoints (`push`), the OpenAPI
description (`openapi`) and the answers to what is refused (`errors`). Views are thin: they call the
domain rooms. Nothing imports `app` but the service, the CLI and the tests that create the app."""

// Starts Swagger UI on the /docs page. A file of its own, not an inline script, so
// that the page's Content-Security-Policy can allow scripts from 'self' only.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  root.textContent = "";
  window.ui = window.SwaggerUIBundle({
    // Relative to the page, so the page works behind a path prefix as well.
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
    // No badge from the public validator: the page talks to its own origin only.
    validatorUrl: null,
  });
})();

// The new-campaign form: a file past the upload bound (the form's data-max-bytes, the API's
// Settings.upload_max_bytes) is refused here with the server's own error (code and message,
// data-too-large-*), before a byte is sent; otherwise the form is posted as it is, and a
// refusal comes back as this page with the error shown.
"use strict";

(function () {
  const form = document.getElementById("new-campaign");
  const box = document.getElementById("form-error");
  const state = document.getElementById("upload-state");
  const button = document.getElementById("upload-button");

  function showError(code, message) {
    const alert = document.createElement("div");
    alert.className = "error";
    alert.id = "page-error";
    alert.setAttribute("role", "alert");
    alert.dataset.code = code;
    const text = document.createElement("strong");
    text.className = "error-message";
    text.textContent = message;
    const name = document.createElement("code");
    name.className = "error-code";
    name.textContent = code;
    alert.append(text, " ", name);
    box.replaceChildren(alert);
  }

  form.addEventListener("submit", (event) => {
    const file = document.getElementById("file").files[0];
    if (file && file.size > Number(form.dataset.maxBytes)) {
      event.preventDefault();
      showError(form.dataset.tooLargeCode, form.dataset.tooLargeMessage);
      return;
    }
    box.replaceChildren();
    // One upload at a time: a second click would create a second campaign.
    button.disabled = true;
    state.textContent = "Uploading and checking the contacts…";
  });
  // Back from the campaign's page (the browser's cache): the form is usable again.
  window.addEventListener("pageshow", () => {
    button.disabled = false;
    state.textContent = "";
  });
})();

/*
 * Help widget loader. A site adds:
 *   <script src="https://HOST/widget.js" data-title="…" data-starters="Q1|Q2" data-position="bottom-right"
 *           data-color="#2f4eb5" async></script>
 * It draws a floating button (inside a Shadow DOM, so the host's CSS cannot reach it) that opens
 * HOST/widget in an iframe. No key, cookie or secret is used; the frame talks only to its own server.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) {
    var candidates = document.querySelectorAll('script[src*="widget.js"]');
    script = candidates[candidates.length - 1];
  }
  if (!script || window.__stemHelpWidgetLoaded) {
    return;
  }
  window.__stemHelpWidgetLoaded = true;

  var scriptUrl = new URL(script.src, window.location.href);
  var base = new URL(".", scriptUrl);
  var title = (script.getAttribute("data-title") || "Stem separation: legal questions").slice(0, 80);
  var starters = script.getAttribute("data-starters") || "";
  var left = (script.getAttribute("data-position") || "bottom-right").indexOf("left") !== -1;
  var color = script.getAttribute("data-color") || "";
  if (!/^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]{3,20})$/.test(color)) {
    color = "#2f4eb5";
  }

  var frameUrl = new URL("widget", base);
  frameUrl.searchParams.set("title", title);
  if (starters) {
    frameUrl.searchParams.set("starters", starters.slice(0, 4000));
  }
  frameUrl.searchParams.set("color", color);

  var host = document.createElement("div");
  host.setAttribute("data-stem-help-widget", "");
  var root = host.attachShadow({ mode: "open" });
  var side = left ? "left" : "right";

  // Launcher and panel are fixed to the viewport, inside the device's safe area (notches, home bar). On a phone
  // the open panel takes the whole screen; its own header holds a labelled Close button.
  var gap = "16px";
  var style = document.createElement("style");
  style.textContent = [
    ":host { all: initial; }",
    ".launcher { position: fixed; z-index: 2147483646; box-sizing: border-box;",
    "  bottom: calc(" + gap + " + env(safe-area-inset-bottom, 0px) + var(--vv-bottom, 0px));",
    "  " + side + ": calc(" + gap + " + env(safe-area-inset-" + side + ", 0px) + var(--vv-" + side + ", 0px));",
    "  width: 56px; height: 56px; margin: 0; padding: 0; border-radius: 50%; border: 2px solid #fff; cursor: pointer;",
    "  background: var(--accent); color: var(--on-accent, #fff); font: 600 24px/1 system-ui, sans-serif;",
    "  box-shadow: 0 4px 14px rgba(0,0,0,.28); }",
    ".launcher:focus-visible { outline: 3px solid #000; outline-offset: 3px; box-shadow: 0 0 0 6px #fff; }",
    ".panel { position: fixed; z-index: 2147483647; box-sizing: border-box;",
    "  bottom: calc(" + gap + " + 68px + env(safe-area-inset-bottom, 0px) + var(--vv-bottom, 0px));",
    "  " + side + ": calc(" + gap + " + env(safe-area-inset-" + side + ", 0px) + var(--vv-" + side + ", 0px));",
    "  width: min(400px, calc(100vw - 2 * " + gap + " - env(safe-area-inset-left, 0px) - env(safe-area-inset-right, 0px)));",
    "  height: min(640px, calc(100vh - 68px - 3 * " + gap + " - env(safe-area-inset-top, 0px) - env(safe-area-inset-bottom, 0px)));",
    "  height: min(640px, calc(100dvh - 68px - 3 * " + gap + " - env(safe-area-inset-top, 0px) - env(safe-area-inset-bottom, 0px)));",
    "  border-radius: 12px; overflow: hidden; background: #fff;",
    "  box-shadow: 0 10px 40px rgba(0,0,0,.3); display: none; }",
    ".panel.open { display: block; }",
    ".panel iframe { width: 100%; height: 100%; border: 0; display: block; }",
    "@media (max-width: 639.98px) {",
    "  .panel { top: var(--vv-top, 0px); left: var(--vv-left, 0px); right: auto; bottom: auto;",
    "    width: var(--vv-width, 100vw); height: var(--vv-height, 100vh);",
    "    border-radius: 0; box-shadow: none; padding: env(safe-area-inset-top, 0px) env(safe-area-inset-right, 0px)",
    "      env(safe-area-inset-bottom, 0px) env(safe-area-inset-left, 0px); }",
    "  .launcher.open { display: none; }",
    "}",
  ].join("\n");

  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "launcher";
  launcher.style.setProperty("--accent", color);
  // The "?" is white or near-black on the site's colour, whichever has more contrast (a named colour counts as dark).
  var hex = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(color) ? color.slice(1) : "";
  if (hex.length === 3) {
    hex = hex.replace(/(.)/g, "$1$1");
  }
  if (hex) {
    var light = [0, 2, 4].map(function (at) {
      var c = parseInt(hex.slice(at, at + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var lum = 0.2126 * light[0] + 0.7152 * light[1] + 0.0722 * light[2];
    launcher.style.setProperty("--on-accent", 1.05 / (lum + 0.05) >= (lum + 0.05) / 0.066 ? "#fff" : "#1d2230");
  }
  launcher.setAttribute("aria-label", "Open help: " + title);
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "stem-help-panel");
  launcher.textContent = "?";

  var panel = document.createElement("div");
  panel.className = "panel";
  panel.id = "stem-help-panel";
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", title);

  var frame = null;

  function open() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.title = title;
      frame.src = frameUrl.toString();
      frame.setAttribute("referrerpolicy", "no-referrer");
      panel.appendChild(frame);
    }
    panel.classList.add("open");
    launcher.classList.add("open");
    fitToViewport();
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close help: " + title);
    launcher.textContent = "\u00d7";
    frame.focus();
  }

  function close() {
    panel.classList.remove("open");
    launcher.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open help: " + title);
    launcher.textContent = "?";
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (panel.classList.contains("open")) {
      close();
    } else {
      open();
    }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && panel.classList.contains("open")) {
      close();
    }
  });
  // Escape pressed, or Close clicked, inside the frame arrives as a message from the widget's own origin.
  window.addEventListener("message", function (event) {
    if (event.origin === base.origin && event.data === "stem-help:close" && panel.classList.contains("open")) {
      close();
    }
  });

  // A page wider than the screen (a long line of code, a wide table) makes a phone browser stretch the layout
  // viewport that position: fixed is measured against, which would carry the button off-screen. The visual
  // viewport is what the person sees: its edges are passed to the CSS above.
  var probe = document.createElement("div");
  probe.setAttribute("aria-hidden", "true");
  probe.style.cssText = "position: fixed; inset: 0; visibility: hidden; pointer-events: none;";

  function fitToViewport() {
    var view = window.visualViewport;
    if (!view) {
      return;
    }
    // The box position: fixed is measured against, as this browser lays it out.
    var layout = probe.getBoundingClientRect();
    var layoutWidth = layout.width;
    var layoutHeight = layout.height;
    var edges = {
      left: view.offsetLeft,
      top: view.offsetTop,
      right: Math.max(0, layoutWidth - view.offsetLeft - view.width),
      bottom: Math.max(0, layoutHeight - view.offsetTop - view.height),
      width: view.width,
      height: view.height,
    };
    Object.keys(edges).forEach(function (key) {
      host.style.setProperty("--vv-" + key, Math.round(edges[key]) + "px");
    });
  }
  if (window.visualViewport) {
    window.visualViewport.addEventListener("resize", fitToViewport);
    window.visualViewport.addEventListener("scroll", fitToViewport);
  }
  window.addEventListener("resize", fitToViewport);

  root.appendChild(style);
  root.appendChild(probe);
  root.appendChild(panel);
  root.appendChild(launcher);

  function attach() {
    document.body.appendChild(host);
    fitToViewport();
  }
  if (document.body) {
    attach();
  } else {
    document.addEventListener("DOMContentLoaded", attach);
  }
})();

import { render } from "preact";
import { loadConfig } from "./api";
import { App } from "./app";
import "./styles.css";

const root = document.getElementById("app");
if (root) {
  loadConfig().then(
    () => render(<App />, root),
    (err: unknown) => {
      root.textContent = `The console cannot start: ${err instanceof Error ? err.message : String(err)}`;
    },
  );
}

// tokenmesh's web console: signs in at Auth, lists the caller's products with
// the entitlement grant decoded, places orders (showing which source decided),
// and lets an admin revoke or grant an entitlement. Every call is gRPC-Web,
// straight to the services, with the bearer token from memory.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AuthService } from "./gen/tokenmesh/auth/v1/auth_pb.js";
import { EntitlementSource, OrdersService } from "./gen/tokenmesh/orders/v1/orders_pb.js";
import { ProductsService } from "./gen/tokenmesh/products/v1/products_pb.js";
import { decodeGrant } from "./claims.js";
import * as sessions from "./session.js";

/** Where the three services are, as the page's own server says. */
interface Config {
  auth: string;
  products: string;
  orders: string;
}

/** How long one call may take. */
const TIMEOUT_MS = 10_000;

const bearer: Interceptor = (next) => async (request) => {
  const token = sessions.accessToken();
  if (token !== undefined) request.header.set("authorization", `Bearer ${token}`);
  return next(request);
};

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`#${id} missing`);
  return found as T;
}

/** A refusal as a person reads it: the gRPC code's name and the message. */
function describe(error: unknown): string {
  if (error instanceof ConnectError) return `${Code[error.code]}: ${error.rawMessage}`;
  return error instanceof Error ? error.message : String(error);
}

/** How many results have been shown: lets a test wait for the next one. */
let shown = 0;

function show(id: string, text: string, refused = false): void {
  const out = element(id);
  out.textContent = text;
  out.classList.toggle("refused", refused);
  shown += 1;
  out.dataset["sequence"] = String(shown);
}

async function main(): Promise<void> {
  const response = await fetch("/console/config.json", { cache: "no-store" });
  const config = (await response.json()) as Config;
  const transport = (baseUrl: string) =>
    createGrpcWebTransport({ baseUrl, interceptors: [bearer] });
  const auth = createClient(AuthService, transport(config.auth));
  const products = createClient(ProductsService, transport(config.products));
  const orders = createClient(OrdersService, transport(config.orders));
  const call = { timeoutMs: TIMEOUT_MS };

  /** The grant of the last listing: sent with every order. */
  let grant = "";

  const signedIn = (session: sessions.Session | undefined, error?: unknown) => {
    element("login").hidden = session !== undefined;
    element("workspace").hidden = session === undefined;
    element("admin").hidden = !(session?.scopes.includes("admin") ?? false);
    if (session === undefined) {
      grant = "";
      element("product-rows").replaceChildren();
      show("grant-version", "");
      show("grant-claims", "");
      show("order-result", "");
      show("admin-result", "");
      show("login-result", error === undefined ? "" : `Signed out: ${describe(error)}`, error !== undefined);
      return;
    }
    const expires = new Date(session.expiresAt).toLocaleTimeString();
    const scopes = session.scopes.join(" ") || "none";
    show("who", `Signed in as ${session.username} (scopes: ${scopes}); access token valid until ${expires}, refreshed before then`);
  };

  const listProducts = async () => {
    try {
      const listed = await products.listProducts({}, call);
      grant = listed.entitlementToken;
      const rows = listed.products.map((product) => {
        const row = document.createElement("tr");
        const order = document.createElement("button");
        order.type = "button";
        order.textContent = "Order";
        order.dataset["product"] = product.id;
        order.addEventListener("click", () => void placeOrder(product.id));
        const cells = [product.id, product.name, (Number(product.priceCents) / 100).toFixed(2)].map((text) => {
          const cell = document.createElement("td");
          cell.textContent = text;
          return cell;
        });
        const action = document.createElement("td");
        action.append(order);
        row.append(...cells, action);
        return row;
      });
      element("product-rows").replaceChildren(...rows);
      if (grant === "") {
        show("grant-version", "No grant: too large to carry, Orders asks elsewhere");
        show("grant-claims", "");
        return;
      }
      const decoded = decodeGrant(grant);
      const until = new Date(Number(decoded.claims["exp"]) * 1000).toLocaleTimeString();
      show("grant-version", `Claims version ${decoded.version}: ${decoded.productIds.join(", ")} (until ${until})`);
      show("grant-claims", JSON.stringify(decoded.claims, null, 2));
    } catch (error) {
      show("grant-version", describe(error), true);
    }
  };

  const placeOrder = async (productId: string) => {
    const quantity = Number(element<HTMLInputElement>("quantity").value) || 1;
    try {
      const order = await orders.placeOrder(
        { productId, quantity, requestId: crypto.randomUUID(), entitlementToken: grant },
        call,
      );
      const source = EntitlementSource[order.entitlementSource].replace(/^ENTITLEMENT_SOURCE_/, "");
      show("order-result", `Order ${order.id}: ${order.productId} × ${order.quantity}, decided by ${source}`);
    } catch (error) {
      show("order-result", `Order for ${productId} refused: ${describe(error)}`, true);
    }
  };

  element<HTMLFormElement>("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const username = element<HTMLInputElement>("username").value;
    const password = element<HTMLInputElement>("password").value;
    void (async () => {
      try {
        const tokens = await auth.login({ username, password }, call);
        element<HTMLInputElement>("password").value = "";
        show("login-result", "");
        signedIn(sessions.start(auth, username, tokens, signedIn));
        await listProducts();
      } catch (error) {
        show("login-result", describe(error), true);
      }
    })();
  });

  element("logout").addEventListener("click", () => {
    const refreshToken = sessions.clear();
    signedIn(undefined);
    // Revokes the whole login at Auth, its access tokens included.
    if (refreshToken !== undefined) void auth.logout({ refreshToken }, call).catch(() => undefined);
  });

  element("reload").addEventListener("click", () => void listProducts());

  element<HTMLFormElement>("order-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void placeOrder(element<HTMLInputElement>("order-product").value.trim());
  });

  const entitlement = (change: "revoke" | "grant") => async () => {
    const subject = element<HTMLInputElement>("admin-subject").value.trim();
    const productId = element<HTMLInputElement>("admin-product").value.trim();
    try {
      const request = { subject, productId };
      const answer =
        change === "revoke"
          ? await products.revokeEntitlement(request, call)
          : await products.grantEntitlement(request, call);
      const verb = change === "revoke" ? "Revoked" : "Granted";
      show(
        "admin-result",
        answer.changed
          ? `${verb}: ${subject} / ${productId} (feed cursor ${answer.cursor})`
          : `Unchanged: ${subject} / ${productId} was already ${change === "revoke" ? "revoked" : "granted"}`,
      );
    } catch (error) {
      show("admin-result", describe(error), true);
    }
  };
  element("revoke").addEventListener("click", () => void entitlement("revoke")());
  element("grant").addEventListener("click", () => void entitlement("grant")());

  signedIn(undefined);
  document.body.dataset["ready"] = "true";
}

void main().catch((error: unknown) => show("login-result", `Console failed to start: ${describe(error)}`, true));
